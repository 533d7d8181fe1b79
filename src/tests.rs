//! Unit tests of the crate root's own helpers.

use super::*;

/// The default MAX_CONNECTIONS lowered to the open-files limit is said at info level: it was
/// a warning at every start, about a number the user never chose. One the user set stays a
/// warning.
#[test]
fn a_lowered_default_max_connections_is_information_and_a_set_one_a_warning() {
    let (max, said) = connections_room(10_000, false, 20_000, 0);
    assert_eq!(max, 9936);
    let (level, text) = said.unwrap();
    assert_eq!(level, tracing::Level::INFO);
    assert!(
        text.contains("at most 9936 user connections")
            && text.contains("the default MAX_CONNECTIONS=10000"),
        "{text}"
    );
    let (_, said) = connections_room(10_000, true, 20_000, 0);
    let (level, text) = said.unwrap();
    assert_eq!(level, tracing::Level::WARN);
    assert!(text.contains("to allow MAX_CONNECTIONS=10000)"), "{text}");
    assert_eq!(connections_room(100, true, 20_000, 0), (100, None));
}
