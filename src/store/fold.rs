//! Which stored accounts become one when names are folded as Postfix folds map keys
//! (`SaslUser`): the rule both backends' migrations apply, each in its own SQL.

use std::collections::BTreeMap;

use crate::model::{fold_case, Level};

/// What folding does to one folded name's accounts.
pub(super) enum Fold {
    /// The only account of its folded name, stored under another spelling.
    Rename { id: i64, name: String },
    /// Several spellings: `keep` takes over the others' rows and the folded name.
    Merge {
        name: String,
        keep: i64,
        others: Vec<i64>,
    },
}

/// The folds the accounts `(id, name as stored, level as stored)` need; none when
/// every name is already folded and no two fold alike. Where several fold to one,
/// the most worried (then the oldest) keeps its row, so the merged account is at
/// least as contained as the worst of them.
pub(super) fn plan(accounts: impl IntoIterator<Item = (i64, String, String)>) -> Vec<Fold> {
    let mut groups: BTreeMap<String, Vec<(i64, Level, bool)>> = BTreeMap::new();
    for (id, name, level) in accounts {
        let folded = fold_case(&name);
        let renamed = folded != name;
        let level = Level::from_db(&level).unwrap_or(Level::Ok);
        groups.entry(folded).or_default().push((id, level, renamed));
    }
    let mut folds = Vec::new();
    for (name, mut accounts) in groups {
        if let [(id, _, renamed)] = accounts[..] {
            if renamed {
                folds.push(Fold::Rename { id, name });
            }
            continue;
        }
        // Highest level first, then the oldest row.
        accounts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        folds.push(Fold::Merge {
            name,
            keep: accounts[0].0,
            others: accounts[1..].iter().map(|a| a.0).collect(),
        });
    }
    folds
}

/// Per-account whitelist entries `(id, account as stored)` whose account folds to
/// another spelling, with that spelling.
pub(super) fn whitelist_plan(entries: Vec<(i64, String)>) -> Vec<(i64, String)> {
    entries
        .into_iter()
        .filter_map(|(id, account)| {
            let folded = fold_case(&account);
            (folded != account).then_some((id, folded))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, name: &str, level: &str) -> (i64, String, String) {
        (id, name.to_owned(), level.to_owned())
    }

    #[test]
    fn the_worst_spelling_keeps_its_row_and_a_lone_one_is_renamed() {
        let folds = plan([
            row(1, "strasse@x.test", "ok"),
            row(2, "straße@x.test", "block"),
            row(3, "maß@x.test", "notify"),
            row(4, "bob@x.test", "ok"),
        ]);
        assert_eq!(folds.len(), 2);
        assert!(matches!(&folds[0], Fold::Rename { id: 3, name } if name == "mass@x.test"));
        assert!(matches!(&folds[1], Fold::Merge { name, keep: 2, others }
            if name == "strasse@x.test" && others == &[1]));
    }

    #[test]
    fn equal_levels_keep_the_oldest_row() {
        let folds = plan([
            row(7, "straße@x.test", "ok"),
            row(5, "strasse@x.test", "ok"),
        ]);
        assert!(matches!(&folds[0], Fold::Merge { keep: 5, others, .. } if others == &[7]));
    }
}
