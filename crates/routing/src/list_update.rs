//! `ListUpdate`: the set/add/remove/clear edit of a repeated string field.

use livekit_protocol::ListUpdate;

use crate::error::RoutingError;

/// Checks that a ListUpdate means exactly one thing.
pub fn validate_list_update(update: &ListUpdate) -> Result<(), RoutingError> {
    let changes = !update.add.is_empty() || !update.remove.is_empty();
    if !update.clear && update.set.is_empty() && !changes {
        return Err(RoutingError::ListUpdateEmpty);
    }
    if update.clear && (changes || !update.set.is_empty()) {
        return Err(RoutingError::ListUpdateClearAndChange);
    }
    if !update.set.is_empty() && changes {
        return Err(RoutingError::ListUpdateSetAndChange);
    }
    let all = update.set.iter().chain(&update.add).chain(&update.remove);
    if all.into_iter().any(String::is_empty) {
        return Err(RoutingError::ListUpdateEmptyElement);
    }
    Ok(())
}

/// Validates `update`, then applies it to `list`: clear empties it; set
/// replaces it; otherwise each `remove` drops its first occurrence, then each
/// `add` is appended unless already present.
pub fn apply_list_update(list: &mut Vec<String>, update: &ListUpdate) -> Result<(), RoutingError> {
    validate_list_update(update)?;
    if update.clear {
        list.clear();
        return Ok(());
    }
    if !update.set.is_empty() {
        list.clone_from(&update.set);
        return Ok(());
    }
    for item in &update.remove {
        if let Some(pos) = list.iter().position(|x| x == item) {
            list.remove(pos);
        }
    }
    for item in &update.add {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lu(set: &[&str], add: &[&str], remove: &[&str], clear: bool) -> ListUpdate {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        ListUpdate {
            set: v(set),
            add: v(add),
            remove: v(remove),
            clear,
        }
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn application_table() {
        let cases: Vec<(&[&str], ListUpdate, &[&str])> = vec![
            (&["a", "b"], lu(&[], &[], &[], true), &[]),
            (&["a", "b"], lu(&["c"], &[], &[], false), &["c"]),
            (&["a", "b"], lu(&[], &["c"], &[], false), &["a", "b", "c"]),
            (&["a", "b"], lu(&[], &["a"], &[], false), &["a", "b"]),
            (&["a", "b", "a"], lu(&[], &[], &["a"], false), &["b", "a"]),
            (&["a"], lu(&[], &["b"], &["a"], false), &["b"]),
            // remove runs before add, so removing and adding one item keeps it.
            (&["a"], lu(&[], &["a"], &["a"], false), &["a"]),
            (&[], lu(&[], &[], &["x"], false), &[]),
        ];
        for (start, update, want) in cases {
            let mut list = strings(start);
            apply_list_update(&mut list, &update).unwrap();
            assert_eq!(list, strings(want), "{start:?} with {update:?}");
        }
    }

    #[test]
    fn invalid_updates_are_refused_with_livekit_texts() {
        let cases = [
            (
                lu(&[], &[], &[], false),
                "unsupported list update operation",
            ),
            (
                lu(&["a"], &[], &[], true),
                "cannot clear and change the list at the same time",
            ),
            (
                lu(&[], &["a"], &[], true),
                "cannot clear and change the list at the same time",
            ),
            (
                lu(&["a"], &["b"], &[], false),
                "cannot set and change the list at the same time",
            ),
            (
                lu(&["a"], &[], &["b"], false),
                "cannot set and change the list at the same time",
            ),
            (lu(&[], &[""], &[], false), "empty element in the list"),
            (lu(&[""], &[], &[], false), "empty element in the list"),
        ];
        for (update, text) in cases {
            let mut list = strings(&["keep"]);
            let err = apply_list_update(&mut list, &update).unwrap_err();
            assert_eq!(err.to_string(), text);
            assert_eq!(err.code(), crate::ErrorCode::InvalidArgument);
            assert_eq!(list, strings(&["keep"]), "a refused update changes nothing");
        }
    }
}
