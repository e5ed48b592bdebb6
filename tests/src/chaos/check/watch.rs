//! Watch guarantees, for each recorded watch stream (a [`WatchSegment`]): its events come in revision
//! order, each once; all events of one revision arrive in one response; a response's header revision is
//! not below its events'; and the events delivered are exactly the log's events under the watched prefix
//! from the stream's start revision up to the last revision it delivered — no gap, nothing invented.
//! Streams start at seeded revisions (older ones, the current one, future ones) and resume after a
//! broken stream from the next revision on another member, so "resumable from any revision" is checked
//! as "every stream equals the one log".

use std::collections::HashMap;

use super::{Anomaly, RevLog};
use crate::chaos::history::{Event, WatchSegment};

const C: &str = "watch";

pub fn check(segments: &[WatchSegment], log: &RevLog, prefix: &str) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        check_segment(i, seg, log, prefix, &mut out);
    }
    out
}

fn check_segment(i: usize, seg: &WatchSegment, log: &RevLog, prefix: &str, out: &mut Vec<Anomaly>) {
    let name =
        format!("watch stream {i} (watcher {}, m{}, from revision {})", seg.watcher, seg.member + 1, seg.start_rev);
    let mut batch_of_rev: HashMap<i64, usize> = HashMap::new();
    let mut last: Option<&Event> = None;
    for (b, batch) in seg.batches.iter().enumerate() {
        for e in &batch.events {
            let rev = e.rev();
            if rev < seg.start_rev {
                out.push(Anomaly::new(C, format!("{name}: {e} is before the start revision")));
            }
            if rev > batch.header_rev {
                out.push(Anomaly::new(
                    C,
                    format!("{name}: {e} in a response with header revision {}", batch.header_rev),
                ));
            }
            if let Some(p) = last {
                if rev < p.rev() {
                    out.push(Anomaly::new(C, format!("{name}: {e} after {p}: out of order")));
                } else if rev == p.rev() && e.kv.key == p.kv.key {
                    out.push(Anomaly::new(C, format!("{name}: {e} delivered twice")));
                }
            }
            if let Some(&other) = batch_of_rev.get(&rev) {
                if other != b {
                    out.push(Anomaly::new(C, format!("{name}: revision {rev} split over responses {other} and {b}")));
                }
            }
            batch_of_rev.insert(rev, b);
            last = Some(e);
        }
    }
    let Some(last) = last else { return };
    // The delivered events against the log, from the start revision to the last one delivered.
    let want = log.between(seg.start_rev, last.rev(), prefix);
    let got: Vec<&Event> = seg.events().collect();
    if got != want {
        let k = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
        let what = match (got.get(k), want.get(k)) {
            (Some(g), Some(w)) if g.rev() > w.rev() => format!("a gap: {w} was not delivered (next came {g})"),
            (Some(g), Some(w)) => format!("delivered {g} where the log has {w}"),
            (Some(g), None) => format!("delivered {g}, which is not in the log"),
            (None, Some(w)) => format!("a gap: {w} was not delivered"),
            (None, None) => unreachable!(),
        };
        out.push(Anomaly::new(
            C,
            format!("{name}: {what} ({} events delivered, the log has {})", got.len(), want.len()),
        ));
    }
}
