//! The write-ahead log on disk: replay, torn tails, segments, resets.

use super::*;

fn entry(index: u64, term: u64, data: &str) -> Entry {
    Entry { index, term, data: data.as_bytes().to_vec().into(), ..Default::default() }
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState { term, commit, ..Default::default() }
}

fn data(w: &Wal, low: u64, high: u64) -> Vec<String> {
    w.entries(low, high).unwrap().iter().map(|e| String::from_utf8(e.data.to_vec()).unwrap()).collect()
}

#[test]
fn appends_overwrites_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[entry(1, 1, "a")], &hs(1, 0), None).unwrap();
    for i in 2..=5 {
        w.append(&entry(i, 1, &format!("e{i}"))).unwrap();
    }
    // Read back before and after the write.
    assert_eq!(data(&w, 4, 6), ["e4", "e5"]);
    w.flush().unwrap();
    // A new leader replaces the tail from 4.
    w.append(&entry(4, 2, "x4")).unwrap();
    w.set_hard_state(&hs(2, 3)).unwrap();
    w.flush().unwrap();
    assert_eq!(w.last_index(), 4);
    drop(w);
    let r = Wal::open(&path, (0, 0), None).unwrap();
    assert_eq!(r.hard_state.unwrap().commit, 3);
    assert_eq!((r.wal.first_index(), r.wal.last_index()), (1, 4));
    assert_eq!(data(&r.wal, 1, 5), ["a", "e2", "e3", "x4"]);
    assert_eq!(r.wal.term(4), Some(2));
    assert_eq!(r.wal.term(5), None);
}

#[test]
fn a_torn_tail_ends_the_log_and_is_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[], &hs(1, 0), None).unwrap();
    for i in 1..=3 {
        w.append(&entry(i, 1, &format!("e{i}"))).unwrap();
    }
    w.flush().unwrap();
    let end = w.offset;
    drop(w);
    // Entry 3's record loses its last byte: it no longer checks.
    let f = OpenOptions::new().write(true).open(segment_path(&path, 0)).unwrap();
    f.write_all_at(&[0xff], end - 1).unwrap();
    let mut w = Wal::open(&path, (0, 0), None).unwrap().wal;
    assert_eq!(w.last_index(), 2);
    w.append(&entry(3, 2, "new")).unwrap();
    w.flush().unwrap();
    drop(w);
    let w = Wal::open(&path, (0, 0), None).unwrap().wal;
    assert_eq!(data(&w, 1, 4), ["e1", "e2", "new"]);
}

#[test]
fn segments_roll_and_compaction_deletes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[], &hs(3, 0), None).unwrap();
    let big = "v".repeat(SEGMENT_BYTES as usize / 3);
    for i in 1..=7 {
        w.append(&entry(i, 3, &format!("{i}{big}"))).unwrap();
    }
    w.set_hard_state(&hs(3, 7)).unwrap();
    w.flush().unwrap();
    assert!(w.segments.len() >= 3, "{} segments", w.segments.len());
    w.compact(5).unwrap();
    assert_eq!(w.first_index(), 6);
    let left = std::fs::read_dir(&path).unwrap().count();
    assert!(left <= 2, "{left} segment files after compaction");
    drop(w);
    let r = Wal::open(&path, (5, 3), None).unwrap();
    assert_eq!(r.hard_state.unwrap().commit, 7);
    assert_eq!(r.wal.last_index(), 7);
    assert!(r.wal.entries(7, 8).unwrap()[0].data.starts_with(b"7v"));
}

#[test]
fn reset_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[entry(1, 1, "a"), entry(2, 1, "b")], &hs(1, 2), None).unwrap();
    w.reset(100, 4, &hs(4, 100)).unwrap();
    assert_eq!((w.first_index(), w.last_index()), (101, 100));
    w.append(&entry(101, 4, "after")).unwrap();
    w.flush().unwrap();
    drop(w);
    let r = Wal::open(&path, (100, 4), None).unwrap();
    assert_eq!((r.wal.first_index(), r.wal.last_index()), (101, 101));
    assert_eq!(data(&r.wal, 101, 102), ["after"]);
    assert_eq!(r.hard_state.unwrap().commit, 100);
}

#[test]
fn an_empty_newest_segment_is_written_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[entry(1, 1, "a")], &hs(1, 1), None).unwrap();
    drop(w);
    // A stop right after a roll: the next segment exists, allocated, nothing in it.
    let f = File::create(segment_path(&path, 1)).unwrap();
    preallocate(&f, 4096).unwrap();
    drop(f);
    w = Wal::open(&path, (0, 0), None).unwrap().wal;
    w.append(&entry(2, 1, "b")).unwrap();
    w.flush().unwrap();
    drop(w);
    let r = Wal::open(&path, (0, 0), None).unwrap();
    assert_eq!(data(&r.wal, 1, 3), ["a", "b"]);
    assert_eq!(r.hard_state.unwrap().commit, 1);
}

#[test]
fn a_garbage_length_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut w = Wal::create(&path, 1, &[entry(1, 1, "a")], &hs(1, 1), None).unwrap();
    let end = w.offset;
    drop(w);
    // A torn write left a header claiming 4 GiB: the log ends before it, and is written over.
    let f = OpenOptions::new().write(true).open(segment_path(&path, 0)).unwrap();
    f.write_all_at(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, ENTRY], end).unwrap();
    w = Wal::open(&path, (0, 0), None).unwrap().wal;
    assert_eq!(w.last_index(), 1);
    w.append(&entry(2, 1, "b")).unwrap();
    w.flush().unwrap();
    drop(w);
    assert_eq!(data(&Wal::open(&path, (0, 0), None).unwrap().wal, 1, 3), ["a", "b"]);
}
