//! A person's terminal settings: the keys, what each may hold, the defaults, and the check of a
//! change ([`Settings::apply`]) before anything is stored. Pure: no database, no HTTP. The
//! terminal page (`web/static/terminal.js`) applies them to xterm.js.
//!
//! | key | values | default |
//! |---|---|---|
//! | `font_size` | integer 8–32 | 14 |
//! | `theme` | `dark`, `light` | `dark` |
//! | `cursor_style` | `block`, `bar`, `underline` | `block` |
//! | `scrollback` | integer 100–100000 (lines) | 5000 |
//! | `bell` | `none`, `visual`, `sound` | `none` |
//! | `screen_reader` | boolean (xterm.js `screenReaderMode`) | `false` |
//! | `copy_on_select` | boolean: a selection is copied as it is made | `false` |
//! | `key_bar` | `auto` (on touch screens), `on`, `off`: the on-screen keys | `auto` |
//! | `font_family` | `system` (the machine's monospace fonts), `jetbrains-mono` (shipped: JetBrains Mono with ligatures, Nerd Font symbols beside it) | `system` |

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Smallest font size, in CSS pixels.
pub const FONT_SIZE_MIN: i64 = 8;
/// Largest font size, in CSS pixels.
pub const FONT_SIZE_MAX: i64 = 32;
/// Fewest scrollback lines.
pub const SCROLLBACK_MIN: i64 = 100;
/// Most scrollback lines (each line of a wide terminal costs the browser memory).
pub const SCROLLBACK_MAX: i64 = 100_000;
/// The themes.
pub const THEMES: &[&str] = &["dark", "light"];
/// The cursor styles (xterm.js `cursorStyle`).
pub const CURSOR_STYLES: &[&str] = &["block", "bar", "underline"];
/// What the bell does.
pub const BELLS: &[&str] = &["none", "visual", "sound"];
/// When the on-screen key bar shows.
pub const KEY_BARS: &[&str] = &["auto", "on", "off"];
/// The terminal's fonts: the machine's own monospace fonts, or the one the gateway ships
/// (`web/dist/vendor/fonts`, docs/terminal.md).
pub const FONT_FAMILIES: &[&str] = &["system", "jetbrains-mono"];
/// The keys, for messages.
const KEYS: &str = "font_size, theme, cursor_style, scrollback, bell, screen_reader, \
                    copy_on_select, key_bar, font_family";

/// One person's settings, every key present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Font size in CSS pixels.
    pub font_size: i64,
    /// `dark` or `light`.
    pub theme: String,
    /// `block`, `bar` or `underline`.
    pub cursor_style: String,
    /// Lines kept above the screen.
    pub scrollback: i64,
    /// `none`, `visual` or `sound`.
    pub bell: String,
    /// xterm.js's screen reader mode.
    pub screen_reader: bool,
    /// A selection is copied to the clipboard as it is made.
    pub copy_on_select: bool,
    /// `auto`, `on` or `off`: the on-screen key bar (Esc, Tab, Ctrl, arrows).
    pub key_bar: String,
    /// `system` or `jetbrains-mono`.
    pub font_family: String,
}

impl Default for Settings {
    /// What the terminal page used before settings existed.
    fn default() -> Self {
        Self {
            font_size: 14,
            theme: "dark".to_owned(),
            cursor_style: "block".to_owned(),
            scrollback: 5000,
            bell: "none".to_owned(),
            screen_reader: false,
            copy_on_select: false,
            key_bar: "auto".to_owned(),
            font_family: "system".to_owned(),
        }
    }
}

/// A change that cannot be stored: the key and what it may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The key at fault (empty when the change is not an object).
    pub key: String,
    /// For a person: the key and what is allowed.
    pub message: String,
}

fn invalid(key: &str, allowed: &str) -> Invalid {
    Invalid {
        key: key.to_owned(),
        message: format!("settings key {key:?}: {allowed}"),
    }
}

fn integer(key: &str, value: &Value, min: i64, max: i64) -> Result<i64, Invalid> {
    value
        .as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(key, &format!("must be an integer from {min} to {max}")))
}

fn boolean(key: &str, value: &Value) -> Result<bool, Invalid> {
    value
        .as_bool()
        .ok_or_else(|| invalid(key, "must be true or false"))
}

fn one_of(key: &str, value: &Value, allowed: &[&str]) -> Result<String, Invalid> {
    value
        .as_str()
        .filter(|s| allowed.contains(s))
        .map(str::to_owned)
        .ok_or_else(|| invalid(key, &format!("must be one of {}", allowed.join(", "))))
}

impl Settings {
    /// The settings as stored: keys missing or no longer valid read as their defaults (a key
    /// whose range narrowed in a later version, say), unknown ones are dropped.
    pub fn from_stored(text: &str) -> Self {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
            return Self::default();
        };
        let mut settings = Self::default();
        for (key, value) in &map {
            // One key at a time, so that one bad key does not lose the others.
            let mut one = Map::new();
            one.insert(key.clone(), value.clone());
            if let Ok(next) = settings.apply(&Value::Object(one)) {
                settings = next;
            }
        }
        settings
    }

    /// These settings with `change` applied: a JSON object of some of the keys; a key set to
    /// `null` goes back to its default, a key left out keeps its value. Refuses the whole
    /// change (naming the key and what it may hold) when the change is not an object, names
    /// an unknown key or gives a bad value.
    pub fn apply(&self, change: &Value) -> Result<Self, Invalid> {
        let Value::Object(map) = change else {
            return Err(Invalid {
                key: String::new(),
                message: format!("the settings must be a JSON object of keys {KEYS}"),
            });
        };
        let defaults = Self::default();
        let mut next = self.clone();
        for (key, value) in map {
            let reset = value.is_null();
            match key.as_str() {
                "font_size" => {
                    next.font_size = match reset {
                        true => defaults.font_size,
                        false => integer(key, value, FONT_SIZE_MIN, FONT_SIZE_MAX)?,
                    }
                }
                "scrollback" => {
                    next.scrollback = match reset {
                        true => defaults.scrollback,
                        false => integer(key, value, SCROLLBACK_MIN, SCROLLBACK_MAX)?,
                    }
                }
                "theme" => {
                    next.theme = match reset {
                        true => defaults.theme.clone(),
                        false => one_of(key, value, THEMES)?,
                    }
                }
                "cursor_style" => {
                    next.cursor_style = match reset {
                        true => defaults.cursor_style.clone(),
                        false => one_of(key, value, CURSOR_STYLES)?,
                    }
                }
                "bell" => {
                    next.bell = match reset {
                        true => defaults.bell.clone(),
                        false => one_of(key, value, BELLS)?,
                    }
                }
                "screen_reader" => {
                    next.screen_reader = match reset {
                        true => defaults.screen_reader,
                        false => boolean(key, value)?,
                    }
                }
                "copy_on_select" => {
                    next.copy_on_select = match reset {
                        true => defaults.copy_on_select,
                        false => boolean(key, value)?,
                    }
                }
                "key_bar" => {
                    next.key_bar = match reset {
                        true => defaults.key_bar.clone(),
                        false => one_of(key, value, KEY_BARS)?,
                    }
                }
                "font_family" => {
                    next.font_family = match reset {
                        true => defaults.font_family.clone(),
                        false => one_of(key, value, FONT_FAMILIES)?,
                    }
                }
                _ => {
                    return Err(invalid(key, &format!("unknown key; the keys are {KEYS}")));
                }
            }
        }
        Ok(next)
    }

    /// As stored: the JSON object of every key.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn good_changes_apply_and_null_resets() {
        let s = Settings::default()
            .apply(&json!({"font_size": 15, "theme": "light", "screen_reader": true}))
            .unwrap();
        assert_eq!(s.font_size, 15);
        assert_eq!(s.theme, "light");
        assert!(s.screen_reader);
        assert_eq!(s.scrollback, 5000, "left out: unchanged");
        let s = s.apply(&json!({"font_size": null})).unwrap();
        assert_eq!(s.font_size, 14);
        assert_eq!(s.theme, "light");
        for (key, value) in [
            ("font_size", json!(8)),
            ("font_size", json!(32)),
            ("scrollback", json!(100)),
            ("scrollback", json!(100_000)),
            ("cursor_style", json!("underline")),
            ("bell", json!("sound")),
            ("copy_on_select", json!(true)),
            ("key_bar", json!("on")),
            ("key_bar", json!("off")),
            ("font_family", json!("jetbrains-mono")),
            ("font_family", json!("system")),
        ] {
            assert!(Settings::default().apply(&json!({ key: value })).is_ok());
        }
    }

    #[test]
    fn bad_changes_name_the_key_and_what_is_allowed() {
        let table = [
            (json!({"colour": "red"}), "colour", "unknown key"),
            (json!({"font_size": 7}), "font_size", "8 to 32"),
            (json!({"font_size": 33}), "font_size", "8 to 32"),
            (json!({"font_size": 14.5}), "font_size", "integer"),
            (json!({"font_size": "14"}), "font_size", "integer"),
            (json!({"scrollback": 99}), "scrollback", "100 to 100000"),
            (
                json!({"scrollback": 100_001}),
                "scrollback",
                "100 to 100000",
            ),
            (json!({"theme": "solarized"}), "theme", "dark, light"),
            (
                json!({"cursor_style": "beam"}),
                "cursor_style",
                "block, bar",
            ),
            (json!({"bell": true}), "bell", "none, visual, sound"),
            (
                json!({"screen_reader": "yes"}),
                "screen_reader",
                "true or false",
            ),
            (
                json!({"copy_on_select": 1}),
                "copy_on_select",
                "true or false",
            ),
            (json!({"key_bar": "always"}), "key_bar", "auto, on, off"),
            (
                json!({"font_family": "Comic Sans"}),
                "font_family",
                "system, jetbrains-mono",
            ),
            (
                json!({"font_family": 1}),
                "font_family",
                "system, jetbrains-mono",
            ),
            (json!([1]), "", "JSON object"),
        ];
        for (change, key, words) in table {
            let e = Settings::default().apply(&change).unwrap_err();
            assert_eq!(e.key, key, "{change}");
            assert!(e.message.contains(words), "{change}: {}", e.message);
            assert!(e.message.contains(key), "{change}: {}", e.message);
        }
    }

    #[test]
    fn stored_text_reads_leniently() {
        assert_eq!(Settings::from_stored("not json"), Settings::default());
        let s = Settings::from_stored(r#"{"font_size": 99, "theme": "light", "old": 1}"#);
        assert_eq!(s.font_size, 14);
        assert_eq!(s.theme, "light");
        let round = Settings::from_stored(&s.to_json().to_string());
        assert_eq!(round, s);
    }
}
