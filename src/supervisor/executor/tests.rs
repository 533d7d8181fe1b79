use super::done::file_away;
use super::*;

#[test]
fn a_filing_reports_the_action_it_carried_out_whether_or_not_it_failed() {
    let base = tempfile::tempdir().unwrap();
    let layout = Layout::new(base.path(), "app");
    let v = semver::Version::parse("1.0.0").unwrap();
    std::fs::create_dir_all(layout.version_dir(&v)).unwrap();
    std::fs::write(layout.version_dir(&v).join("app-1.0.0.jar"), b"jar").unwrap();
    let archive = Action::Archive(v.clone());
    for ok in [true, false] {
        // The second time, there is no folder left to archive.
        std::fs::remove_file(layout.archive_zip(&v)).ok();
        let Done::Filed { result, filing, .. } = file_away(&layout, archive.clone()) else {
            panic!("not a filing report");
        };
        assert_eq!(result.is_ok(), ok, "{result:?}");
        assert_eq!(filing.as_deref(), Some(&archive));
    }
}
