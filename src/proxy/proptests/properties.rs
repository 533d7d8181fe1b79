//! The properties: no input makes a parser panic, where a read boundary falls changes nothing,
//! what the engine writes is the message it read less what the contract drops, and the peer
//! reads it as the engine relays it.

use super::*;

// ---------------------------------------------------------------------------------------------
// No input makes a parser panic.

proptest! {
    #![proptest_config(config())]

    /// Whatever a user sends, with any bounds and any address, `head::parse` answers; a head it
    /// forwards lies within what was read, and what it writes ends with the blank line.
    #[test]
    fn request_heads_never_panic(
        raw in any_request_bytes(),
        max_headers in 0usize..=120,
        peer in vec(any::<u8>(), 0..24),
    ) {
        let mut out = Vec::new();
        if let Parsed::Request(r) = head::parse(&raw, max_headers, &peer, false, &mut out) {
            prop_assert!(r.len <= raw.len());
            prop_assert!(out.ends_with(b"\r\n\r\n"), "{:?}", text(&out));
        }
    }

    /// What `head::parse` forwards is one whole HTTP/1.1 head (httparse reads it to its last
    /// byte), of the method it read, `x-forwarded-for` last.
    #[test]
    fn forwarded_heads_are_whole_heads(raw in any_request_bytes()) {
        if let (Parsed::Request(r), out) = parse_request(&raw, PEER) {
            let again = reread_request(&out)?;
            prop_assert_eq!(again.first.as_str(), r.method.as_str());
            let last = again.headers.last().map(|h| h.0.as_str());
            prop_assert_eq!(last, Some("x-forwarded-for"));
        }
    }

    /// Whatever an app sends, for any user, `answer::parse` answers; what it relays is one whole
    /// HTTP/1.1 head of the status it read; only a head past the bound is too large.
    #[test]
    fn answer_heads_never_panic(raw in any_answer_bytes(), asker in asker()) {
        let mut out = Vec::new();
        match answer::parse(&raw, asker, &mut out) {
            Ok(Some(a)) => {
                prop_assert!(a.len <= raw.len());
                let again = reread_answer(&out)?;
                prop_assert_eq!(again.first, a.status.to_string());
            }
            Err(answer::BadAnswer::TooLarge) => {
                prop_assert!(raw.len() >= answer::MAX_ANSWER_HEAD);
            }
            Ok(None) | Err(_) => {}
        }
    }

    /// A body decoder in any state it can be in, fed any bytes in any pieces, answers: it takes
    /// no more than it is given and hands on no more data than it took; `Chunk::feed` directly
    /// takes what `Framing::feed` does.
    #[test]
    fn body_decoders_never_panic(
        state in framing_state(),
        bytes in any_body_bytes(),
        cuts in vec(any::<Index>(), 0..4),
    ) {
        let mut f = state;
        for p in pieces(&bytes, &cuts) {
            let mut handed = 0;
            match f.feed(p, &mut |d| handed += d.len()) {
                Ok(n) => prop_assert!(n <= p.len() && handed <= n, "{} {} {}", n, handed, p.len()),
                Err(_) => break,
            }
        }
        if let Framing::Chunked(c) = state {
            let direct = feed_chunk_pieces(c, &pieces(&bytes, &cuts));
            let framed = feed_pieces(state, &pieces(&bytes, &cuts));
            prop_assert_eq!(direct.0, framed.0);
            prop_assert_eq!(direct.1, framed.1);
        }
    }

    /// `copy_of` reads any bytes (and any head `head::parse` wrote) without panicking; a path it
    /// gives is one the mirror can send.
    #[test]
    fn copies_never_panic(raw in prop_oneof![
        any_request_bytes(),
        any_request_bytes().prop_map(|raw| Raw(parse_request(&raw, PEER).1)),
    ]) {
        if let Some((path, _)) = head::copy_of(&raw) {
            prop_assert!(path.as_str().starts_with('/'), "{}", path);
        }
    }

    /// `content_length` reads any bytes; it takes exactly 1 to 19 digits with blanks around,
    /// and gives their number.
    #[test]
    fn content_lengths_are_digits_alone(raw in prop_oneof![
        vec(any::<u8>(), 0..24).prop_map(Raw),
        "[ \t]{0,2}[0-9]{1,21}[ \t]{0,2}".prop_map(|s| Raw(s.into_bytes())),
        "[ \t]{0,2}[-+0-9, ]{1,6}[ \t]{0,2}".prop_map(|s| Raw(s.into_bytes())),
    ]) {
        let v = raw.trim_ascii();
        let digits = !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
        let n = digits.then(|| v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
        prop_assert_eq!(fields::content_length(&raw), n, "{:?}", text(&raw));
    }

    /// `tokens` of any value are non-empty, trimmed and comma-free, one per non-blank item.
    #[test]
    fn tokens_are_the_items_of_a_list(raw in vec(prop_oneof![
        Just(b','), Just(b' '), Just(b'\t'), any::<u8>(),
    ], 0..40).prop_map(Raw)) {
        let items = raw.split(|&b| b == b',').filter(|i| !i.trim_ascii().is_empty()).count();
        let tokens: Vec<&[u8]> = fields::tokens(&raw).collect();
        prop_assert_eq!(tokens.len(), items);
        for t in tokens {
            prop_assert!(!t.is_empty() && !t.contains(&b',') && t.trim_ascii() == t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Where a read boundary falls changes nothing.

proptest! {
    #![proptest_config(config())]

    /// A valid chunked body, then anything, in any pieces: the decoder takes exactly the body,
    /// hands on exactly the chunks' data and ends `Done`, as when fed all at once (through
    /// `Chunk::feed` and `Framing::feed` alike).
    #[test]
    fn chunked_bodies_end_where_they_end_however_split(
        body in chunked(),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let raw = body.render();
        let input = [raw.clone(), tail].concat();
        let whole = feed_chunk_pieces(Chunk::START, &[&input]);
        prop_assert_eq!(&whole, &(Ok(raw.len()), body.data(), Chunk::Done), "{:?}", text(&raw));
        let split = feed_chunk_pieces(Chunk::START, &pieces(&input, &cuts));
        prop_assert_eq!(&split, &whole);
        let framed = feed_pieces(Framing::Chunked(Chunk::START), &pieces(&input, &cuts));
        prop_assert_eq!(framed, (Ok(raw.len()), body.data(), Framing::Empty));
    }

    /// `Length(n)` takes exactly n bytes and hands them on, however they are split.
    #[test]
    fn lengths_take_what_they_say_however_split(
        body in vec(any::<u8>(), 0..600),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let input = [body.clone(), tail].concat();
        let n = body.len() as u64;
        let expected = (Ok(body.len()), body, Framing::Empty);
        prop_assert_eq!(&feed_pieces(Framing::Length(n), &[&input]), &expected);
        prop_assert_eq!(&feed_pieces(Framing::Length(n), &pieces(&input, &cuts)), &expected);
    }

    /// Any bytes (broken bodies mostly), from any state of the decoder, in any pieces: the same
    /// outcome as all at once, the same error or the same count, with the same data and state.
    #[test]
    fn any_bytes_decode_the_same_however_split(
        state in framing_state(),
        bytes in any_body_bytes(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let whole = feed_pieces(state, &[&bytes]);
        let split = feed_pieces(state, &pieces(&bytes, &cuts));
        prop_assert_eq!(split, whole, "{:?}", text(&bytes));
    }

    /// A request head arriving byte by byte is `Partial` until its blank line; whole, with any
    /// bytes after it, it reads as it does alone, its length the head's.
    #[test]
    fn request_heads_wait_for_their_blank_line(req in request(), tail in vec(any::<u8>(), 0..32)) {
        let raw = req.render();
        for end in 0..raw.len() {
            let (p, _) = parse_request(&raw[..end], PEER);
            prop_assert_eq!(p, Parsed::Partial, "{} of {:?}", end, text(&raw));
        }
        let (alone, out) = forwarded(&raw, PEER)?;
        prop_assert_eq!(alone.len, raw.len());
        let (p, out_with_tail) = parse_request(&[raw, tail].concat(), PEER);
        prop_assert_eq!(p, Parsed::Request(alone));
        prop_assert_eq!(text(&out_with_tail), text(&out));
    }

    /// The same for answer heads, for any user: not whole (`None`) until the blank line, and
    /// what follows changes nothing.
    #[test]
    fn answer_heads_wait_for_their_blank_line(
        reply in reply(),
        asker in asker(),
        tail in vec(any::<u8>(), 0..32),
    ) {
        let raw = reply.render();
        let mut out = Vec::new();
        for end in 0..raw.len() {
            let p = answer::parse(&raw[..end], asker, &mut out);
            prop_assert_eq!(p, Ok(None), "{} of {:?}", end, text(&raw));
        }
        let (alone, out) = relayed(&raw, asker)?;
        prop_assert_eq!(alone.len, raw.len());
        let (with_tail, out_with_tail) = relayed(&[raw, tail].concat(), asker)?;
        prop_assert_eq!(with_tail, alone);
        prop_assert_eq!(text(&out_with_tail), text(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// What the engine writes is the message it read, less what the contract drops.

proptest! {
    #![proptest_config(config())]

    /// A valid request, parsed and rewritten, reads back (httparse alone) as the same method,
    /// path and headers in the same order, `X-Forwarded-For` folded into one last line; the
    /// mirror's copy has the same path and headers.
    #[test]
    fn requests_are_forwarded_as_sent(req in request()) {
        let (r, out) = forwarded(&req.render(), PEER)?;
        prop_assert_eq!(r.method.as_str(), req.method);
        prop_assert_eq!(r.http10, req.version == "HTTP/1.0");
        prop_assert_eq!(r.body, expected_body(&req.fields));
        let headers = expected_request_headers(&req.fields, PEER);
        let again = reread_request(&out)?;
        prop_assert_eq!(&again.first, req.method);
        prop_assert_eq!(&again.second, &req.target);
        prop_assert_eq!(&again.headers, &headers);
        check_copy(&out, &req.target, &headers)?;
    }

    /// The head the app receives, read by `head::parse` again, is rewritten to the same bytes
    /// but for one more address at the end of `x-forwarded-for`, and framed the same.
    #[test]
    fn rewriting_a_rewritten_request_adds_only_an_address(req in request()) {
        let (r, out) = forwarded(&req.render(), PEER)?;
        let (r2, out2) = forwarded(&out, PEER2)?;
        let expected = [&out[..out.len() - 4], b", ", PEER2, b"\r\n\r\n"].concat();
        prop_assert_eq!(text(&out2), text(&expected));
        prop_assert_eq!((r2.method, r2.body, r2.len), (r.method, r.body, out.len()));
    }

    /// An absolute-form target is forwarded in origin form (RFC 9112 §3.2.1: `/` for an empty
    /// path), its authority the first header, the user's `Host` lines dropped.
    #[test]
    fn absolute_targets_are_forwarded_in_origin_form(
        (req, authority, origin) in absolute_request(),
    ) {
        let (_, out) = forwarded(&req.render(), PEER)?;
        let others: Vec<Field> = req.fields.iter().filter(|f| !f.named("host")).cloned().collect();
        let mut headers = vec![("Host".to_string(), authority)];
        headers.extend(expected_request_headers(&others, PEER));
        let again = reread_request(&out)?;
        prop_assert_eq!(&again.second, &origin);
        prop_assert_eq!(&again.headers, &headers);
    }

    /// A valid answer, parsed and rewritten for an HTTP/1.1 user, reads back as the same status,
    /// reason and headers in the same order; rewritten for any user and then again, it does not
    /// change.
    #[test]
    fn answers_are_relayed_as_sent(reply in reply(), asker in asker()) {
        let (a, out) = relayed(&reply.render(), Asker::default())?;
        prop_assert_eq!(a.status, reply.status);
        let again = reread_answer(&out)?;
        prop_assert_eq!(again.first, reply.status.to_string());
        prop_assert_eq!(&again.second, &reply.reason);
        // A 1xx or 204 carries no framing fields (RFC 9112 §6.1, §6.2): those are dropped.
        let unframed = (reply.status < 200 && reply.status != 101) || reply.status == 204;
        let headers: Vec<(String, String)> = (reply.fields.iter())
            .filter(|f| !(unframed && (f.named("content-length") || f.named("transfer-encoding"))))
            .map(Field::pair)
            .collect();
        prop_assert_eq!(&again.headers, &headers);
        let (_, out) = relayed(&reply.render(), asker)?;
        let (_, out2) = relayed(&out, asker)?;
        prop_assert_eq!(text(&out2), text(&out));
    }

    /// Every header a `Connection` line names (any line, any case) is missing from the head the
    /// app receives, and every other header is there, in order.
    #[test]
    fn requests_lose_the_headers_connection_names(named in connection_named()) {
        let host = Field::new("Host", "h");
        let fields = [vec![host.clone()], named.fields].concat();
        let req = Request { method: "GET", target: "/".into(), version: "HTTP/1.1", nl: "\r\n", fields };
        let (_, out) = forwarded(&req.render(), PEER)?;
        let kept = [vec![host], named.kept].concat();
        prop_assert_eq!(reread_request(&out)?.headers, expected_request_headers(&kept, PEER));
    }

    /// The same for answers.
    #[test]
    fn answers_lose_the_headers_connection_names(named in connection_named()) {
        let length = Field::new("Content-Length", "0");
        let fields = [vec![length.clone()], named.fields].concat();
        let reply = Reply { version: "HTTP/1.1", status: 200, reason: "OK".into(), nl: "\r\n", fields };
        let (_, out) = relayed(&reply.render(), Asker::default())?;
        let kept: Vec<(String, String)> =
            [vec![length], named.kept].concat().iter().map(Field::pair).collect();
        prop_assert_eq!(reread_answer(&out)?.headers, kept);
    }
}

// ---------------------------------------------------------------------------------------------
// The peer reads what the engine wrote as the engine relays it.

proptest! {
    #![proptest_config(config())]

    /// The app frames a forwarded request's body as understudy relays it: the head the app
    /// receives, read by the same rules, says the same length or chunking (else the bytes of one
    /// body are read as another request: request smuggling).
    #[test]
    fn apps_frame_forwarded_bodies_as_relayed(raw in any_request_bytes()) {
        if let (Parsed::Request(r), mut out) = parse_request(&raw, PEER) {
            head::supply_host(&r, b"127.0.0.1:9", &mut out);
            if let (Parsed::Request(again), _) = parse_request(&out, PEER) {
                prop_assert_eq!(again.body, r.body, "{:?} -> {:?}", text(&raw), text(&out));
            }
        }
    }

    /// The app can read every head understudy forwards: by the same rules, it is a request.
    #[test]
    fn apps_accept_forwarded_heads(raw in any_request_bytes()) {
        if let (Parsed::Request(r), mut out) = parse_request(&raw, PEER) {
            head::supply_host(&r, b"127.0.0.1:9", &mut out);
            let (again, _) = parse_request(&out, PEER);
            prop_assert!(
                matches!(again, Parsed::Request(_)),
                "{:?} -> {:?}: {:?}", text(&raw), text(&out), again
            );
        }
    }

    /// The user frames a relayed answer's body as understudy relays it: the head it receives,
    /// read by the same rules, says the same (close-delimited for an answer understudy
    /// dechunks).
    #[test]
    fn users_frame_relayed_bodies_as_relayed(raw in any_answer_bytes(), asker in asker()) {
        let mut out = Vec::new();
        if let Ok(Some(a)) = answer::parse(&raw, asker, &mut out) {
            let sent = if a.dechunk { Framing::Close } else { a.framing };
            let again = answer::parse(&out, asker, &mut Vec::new()).map(|a| a.map(|a| a.framing));
            prop_assert_eq!(again, Ok(Some(sent)), "{:?} -> {:?}", text(&raw), text(&out));
        }
    }
}
