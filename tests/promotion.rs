//! Scoring, promotion, rejection, archive: placeholder until filled in below.
