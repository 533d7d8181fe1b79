use std::time::{Duration, SystemTime};

use super::*;

const LIMITS: Limits = Limits {
    max_base_size: 100,
    min_free_disk: 0,
};

/// An item `age` seconds old.
fn item(age: u64, len: u64, rejected: bool) -> Item {
    Item {
        modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age),
        len,
        rejected,
    }
}

fn archives(lens: &[u64]) -> Vec<Item> {
    // Listed newest first, as a directory may list them.
    lens.iter()
        .enumerate()
        .map(|(i, len)| item(i as u64, *len, false))
        .collect()
}

#[test]
fn archives_go_oldest_first_only_as_far_as_the_budget_needs() {
    let items = archives(&[10, 10, 10]);
    let p = plan(&items, 115, None, LIMITS);
    assert_eq!(
        p.delete,
        vec![(2, Why::Size { base: 115 }), (1, Why::Size { base: 105 })]
    );
    assert_eq!((p.over_size, p.short_disk), (None, None));
    assert_eq!(
        plan(&items, 100, None, LIMITS),
        Plan::default(),
        "at the budget"
    );
}

#[test]
fn no_archive_goes_when_the_rest_of_the_base_dir_alone_is_over_budget() {
    // 30 bytes of archives in a base dir of 140: the other 110 are over 100 by themselves.
    let items = archives(&[10, 10, 10]);
    let p = plan(&items, 140, None, LIMITS);
    assert!(p.delete.is_empty(), "{p:?}");
    assert_eq!(p.over_size, Some(40));
    // Deleting all of them is just enough: they all go.
    assert_eq!(plan(&items, 130, None, LIMITS).delete.len(), 3);
}

#[test]
fn free_disk_is_met_the_same_way() {
    let limits = Limits {
        max_base_size: u64::MAX,
        min_free_disk: 100,
    };
    let items = archives(&[10, 10, 10]);
    let p = plan(&items, 30, Some(85), limits);
    assert_eq!(
        p.delete,
        vec![(2, Why::Disk { free: 85 }), (1, Why::Disk { free: 95 })]
    );
    // Short by more than all archives hold: kept, and said.
    let p = plan(&items, 30, Some(50), limits);
    assert!(p.delete.is_empty(), "{p:?}");
    assert_eq!(p.short_disk, Some(50));
    // Unknown free disk: no disk budget.
    assert_eq!(plan(&items, 30, None, limits), Plan::default());
}

#[test]
fn a_budget_in_reach_is_met_when_the_other_is_not() {
    let limits = Limits {
        max_base_size: 100,
        min_free_disk: 100,
    };
    // The size is over by 40 (out of reach of 30 bytes); the disk is short by 15 (in reach).
    let items = archives(&[10, 10, 10]);
    let p = plan(&items, 140, Some(85), limits);
    assert_eq!(
        p.delete,
        vec![(2, Why::Disk { free: 85 }), (1, Why::Disk { free: 95 })]
    );
    assert_eq!(
        p.over_size,
        Some(20),
        "over by what is left after the disk's deletions"
    );
    assert_eq!(p.short_disk, None);
}

#[test]
fn rejected_keeps_its_newest_builds_and_they_go_before_archives() {
    // 25 rejected builds of 1 byte, aged 100..125 s, and two archives, older still.
    let mut items: Vec<Item> = (0..25).map(|i| item(100 + i, 1, true)).collect();
    items.push(item(1000, 10, false));
    items.push(item(2000, 10, false));
    let p = plan(&items, 50, None, LIMITS);
    let want: Vec<(usize, Why)> = (20..25).rev().map(|i| (i, Why::Count)).collect();
    assert_eq!(p.delete, want, "the 5 oldest rejected builds, oldest first");
    // Over budget by 22 after those 5: the remaining rejected builds go first, oldest first,
    // then the oldest archive.
    let p = plan(&items, 127, None, LIMITS);
    let by_budget: Vec<usize> = p.delete[5..].iter().map(|&(i, _)| i).collect();
    let mut want: Vec<usize> = (0..20).rev().collect();
    want.push(26);
    assert_eq!(by_budget, want);
    assert_eq!(p.delete[5].1, Why::Size { base: 122 });
    assert_eq!(p.over_size, None);
}

#[test]
fn sizes_read_as_people_read_them() {
    assert_eq!(human(512), "512 B");
    assert_eq!(human(40 << 20), "40.0 MiB");
    assert_eq!(human(3 << 29), "1.5 GiB");
}

/// A base dir in a temp folder, with the layout of identifier `app`.
fn base() -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path(), "app");
    (dir, l)
}

fn write(path: &Path, len: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![b'x'; len]).unwrap();
}

#[test]
fn a_collection_keeps_the_archives_when_an_apps_own_logs_fill_the_budget() {
    let (_dir, l) = base();
    let zip = l.archive_dir().join("app-1.0.0.zip");
    write(&zip, 4096);
    write(&l.base().join("app-1.1.0/1/logs/app.log"), 200_000);
    let limits = Limits {
        max_base_size: 100_000,
        min_free_disk: 0,
    };
    let c = collect_garbage(&l, limits);
    assert!(c.deleted.is_empty(), "{c:?}");
    assert!(zip.is_file(), "the rollback target is kept");
    let why = c.over_budget.expect("said");
    assert!(
        why.contains("over MAX_BASE_SIZE 97.7 KiB by 101.7 KiB")
            && why.contains("version folders (builds and instance logs) 195.3 KiB")
            && why.contains("archive/ 4.0 KiB"),
        "{why}"
    );
    // Once the log is gone, the base dir is within budget and nothing is said.
    fs::remove_dir_all(l.base().join("app-1.1.0")).unwrap();
    assert_eq!(collect_garbage(&l, limits), Collection::default());
}

#[test]
fn a_collection_prunes_rejected_and_deletes_only_finished_rejections() {
    let (_dir, l) = base();
    let limits = Limits {
        max_base_size: u64::MAX,
        min_free_disk: 0,
    };
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..KEEP_REJECTED + 2 {
        let reason = l.rejected_dir().join(format!("app-0.{i}.0/reason.json"));
        write(&reason, 10);
        let f = fs::File::options().write(true).open(&reason).unwrap();
        f.set_modified(old + Duration::from_secs(i as u64)).unwrap();
    }
    // One still on its way in (no reason.json yet), older than all by its folder's time.
    write(&l.rejected_dir().join("app-9.0.0/app-9.0.0"), 10);
    let c = collect_garbage(&l, limits);
    let gone: Vec<PathBuf> = c.deleted.iter().map(|d| d.path.clone()).collect();
    assert_eq!(
        gone,
        [
            l.rejected_dir().join("app-0.0.0"),
            l.rejected_dir().join("app-0.1.0")
        ]
    );
    assert!(c
        .deleted
        .iter()
        .all(|d| d.rejected && d.reason.contains("newest 20")));
    assert!(!gone[0].exists() && l.rejected_dir().join("app-0.2.0").is_dir());
    assert!(l.rejected_dir().join("app-9.0.0").is_dir());
    assert_eq!(c.over_budget, None);
}

/// A rejection filed again under the same name between the measure and the deletion (the same
/// version rejected anew) is not the one the plan chose, and is kept.
#[test]
fn a_rejection_filed_again_since_it_was_measured_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path(), "app");
    let rejected = l.rejected_dir().join("app-1.0.0");
    fs::create_dir_all(&rejected).unwrap();
    let reason = rejected.join("reason.json");
    fs::write(&reason, "{}").unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(&reason)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let found = candidates(&l);
    assert_eq!(found.len(), 1);
    assert!(unchanged(&found[0].0, &found[0].1));
    // Rejected anew: a fresh reason.json.
    fs::write(&reason, "{\"again\": true}").unwrap();
    assert!(!unchanged(&found[0].0, &found[0].1));
    fs::remove_file(&reason).unwrap();
    assert!(!unchanged(&found[0].0, &found[0].1), "still being written");
}
