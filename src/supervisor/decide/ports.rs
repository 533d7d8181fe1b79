//! Ports: every slot waiting for one gets the lowest free port of `PORT_RANGE`; a port another
//! program holds is left alone for a while.

use super::{Action, Decision, SlotKey, BUSY_PORT_RETRY};
use crate::hooks::Hook;
use crate::layout::Role;
use crate::supervisor::state::Phase;

impl Decision<'_> {
    /// The port of a child the previous understudy handed over for this part and version: the
    /// start on it adopts that child instead of forking one.
    fn handed_port(&mut self, part: SlotKey) -> Option<u16> {
        let version = self.slot_mut(part)?.version().clone();
        let at = self.s.handed.iter().position(|h| {
            h.part == part.name() && h.version == version && !self.s.taken.contains(&h.port)
        })?;
        Some(self.s.handed.remove(at).port)
    }

    /// Give a port to every slot waiting for one: running first, then a promotion, then testing.
    pub(super) fn assign_ports(&mut self) {
        if self.s.busy_retry.is_some_and(|t| self.now >= t) {
            self.s.busy.clear();
            self.s.busy_retry = None;
        }
        for part in [
            SlotKey::Running,
            SlotKey::Spare,
            SlotKey::Next,
            SlotKey::Testing,
            SlotKey::Secondary,
        ] {
            let waiting = self
                .slot_mut(part)
                .is_some_and(|s| s.phase == Phase::NeedsPort);
            if !waiting {
                continue;
            }
            let (lo, hi) = self.s.ports;
            let handed = self.handed_port(part);
            // A port a handed-over child still holds is its slot's, not the next free one.
            let held = |p: &u16| self.s.handed.iter().any(|h| h.port == *p);
            let free = handed.or_else(|| {
                (lo..=hi)
                    .find(|p| !self.s.taken.contains(p) && !self.s.busy.contains(p) && !held(p))
            });
            let Some(port) = free else {
                if part == SlotKey::Secondary && self.s.busy.is_empty() {
                    // No port to spare in PORT_RANGE: noise stays unknown rather than have the
                    // verdict wait for an instance that cannot start.
                    if let Some(slot) = self.s.secondary.take() {
                        self.give_up_secondary(slot, "no free port in PORT_RANGE".into());
                    }
                    continue;
                }
                if !self.s.busy.is_empty() && self.s.busy_retry.is_none() {
                    self.s.busy_retry = Some(self.now + BUSY_PORT_RETRY);
                }
                continue;
            };
            self.s.taken.insert(port);
            let pre_start = self.s.hooks.pre_start;
            let previous = self.running_version().cloned();
            let slot = self.slot_mut(part).expect("checked above");
            let new_build =
                slot.role == Role::Testing || (part == SlotKey::Running && !slot.proven);
            if pre_start && new_build && handed.is_none() {
                slot.phase = Phase::PreStart { port };
                let action = Action::RunHook {
                    hook: Hook::PreStart,
                    id: Some(slot.id),
                    version: slot.version().clone(),
                    previous: previous.filter(|p| p != slot.version()),
                    dir: None,
                    port: Some(port),
                };
                self.out.push(action);
                continue;
            }
            slot.phase = Phase::Starting { port };
            let action = Action::Start {
                id: slot.id,
                role: slot.role,
                installed: slot.installed.clone(),
                port,
            };
            self.out.push(action);
        }
    }
}
