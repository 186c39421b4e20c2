//! The README's config tables, rendered from the config schema ([`SETTINGS`]):
//! `tidelog configs --markdown` prints them, and a unit test checks that README.md carries them
//! between its `<!-- broker-configs -->` and `<!-- topic-configs -->` markers.

use super::schema::{topic_configs, Mode, SETTINGS};

/// The README's table of broker settings, rendered from [`SETTINGS`].
pub fn markdown_broker_table() -> String {
    let mut out = String::from(
        "| setting | type | default | at run time | topic config | what it does |\n\
         |---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let mut name = format!("`{}`", s.name);
        if !s.aliases.is_empty() {
            let aliases: Vec<String> = s.aliases.iter().map(|a| format!("`{a}`")).collect();
            name.push_str(&format!(" (also {})", aliases.join(", ")));
        }
        let mode = match (s.mode, s.described) {
            (Mode::Dynamic, _) => "dynamic",
            (Mode::ReadOnly, true) => "read-only",
            (Mode::ReadOnly, false) => "read-only, not in DescribeConfigs",
        };
        let topic = SETTINGS
            .iter()
            .filter_map(|o| o.topic.as_ref())
            .find(|t| t.synonyms.contains(&s.name))
            .map_or(String::new(), |t| format!("`{}`", t.name));
        out.push_str(&format!(
            "| {name} | {} | {} | {mode} | {topic} | {} |\n",
            s.config_type.name(),
            s.default.map_or("null".to_string(), |d| format!("`{d}`")),
            s.doc,
        ));
    }
    out
}

/// The README's table of topic configs, rendered from [`SETTINGS`].
pub fn markdown_topic_table() -> String {
    let mut out =
        String::from("| topic config | type | default from | what it does |\n|---|---|---|---|\n");
    for t in topic_configs() {
        let synonyms: Vec<String> = t.synonyms.iter().map(|s| format!("`{s}`")).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            t.name,
            t.config_type.name(),
            match synonyms.is_empty() {
                true => "(topic only)".to_string(),
                false => synonyms.join(", "),
            },
            t.doc,
        ));
    }
    out
}

/// The README block between `<!-- {marker} -->` and `<!-- /{marker} -->`.
#[cfg(test)]
fn readme_block<'a>(readme: &'a str, marker: &str) -> Option<&'a str> {
    let begin = format!("<!-- {marker} -->\n");
    let end = format!("<!-- /{marker} -->");
    let start = readme.find(&begin)? + begin.len();
    let len = readme[start..].find(&end)?;
    Some(&readme[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::super::schema::{setting_named, topic_config};
    use super::*;

    /// tuning.md's "Speed knobs" table is written by hand, with advice; the Kafka names in its
    /// first column must still be settings or topic configs of the schema.
    #[test]
    fn the_tuning_knobs_name_settings_of_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning.md");
        let tuning = std::fs::read_to_string(path).expect("tuning.md");
        let section = tuning
            .split("\n## ")
            .find(|s| s.starts_with("Speed knobs"))
            .expect("a Speed knobs section");
        let mut checked = 0;
        for row in section.lines().filter(|l| l.starts_with("| ")).skip(1) {
            let knob = row.split('|').nth(1).unwrap_or_default();
            for name in knob.split('`').skip(1).step_by(2) {
                if name.contains('.') && !name.contains(' ') {
                    assert!(
                        setting_named(name).is_some() || topic_config(name).is_some(),
                        "tuning.md names {name}, which is no setting of src/config/schema.rs"
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 8,
            "only {checked} names found in tuning.md's knobs"
        );
    }

    /// README.md's config tables are rendered from [`SETTINGS`]; on a mismatch this prints the
    /// block to paste between the markers.
    #[test]
    fn the_readme_tables_match_the_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        for (marker, expected) in [
            ("broker-configs", markdown_broker_table()),
            ("topic-configs", markdown_topic_table()),
        ] {
            let found = readme_block(&readme, marker)
                .unwrap_or_else(|| panic!("README.md has no <!-- {marker} --> block"));
            assert!(
                found == expected,
                "README.md's {marker} table differs from src/config/schema.rs; \
                 replace the block between <!-- {marker} --> and <!-- /{marker} --> with:\n\n{expected}"
            );
        }
    }
}
