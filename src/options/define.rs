//! The machinery behind the option table in [`super`]: the `options!` macro that turns
//! each entry into a field of [`Settings`](super::Settings), a clap argument, a config
//! file key and a row of [`OPTIONS`](super::OPTIONS); the TOML key helpers; the README
//! table.

use std::path::PathBuf;

use super::OPTIONS;

/// How an option is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag VALUE`.
    Value,
    /// `--flag VALUE`, repeatable; a list (or a single string) in the file.
    List,
    /// `--flag` sets it to true.
    Switch,
    /// `--flag` (`--no-...`) sets it to false.
    NoSwitch,
}

/// What the table says of one option.
#[derive(Debug)]
pub struct OptionInfo {
    /// The field name in [`Settings`].
    pub field: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    /// The key in the config file, dotted for a table (`timeouts.udp`).
    pub key: &'static str,
    pub value_name: &'static str,
    pub kind: Kind,
    /// The help text (first line: `--help`; all of it: the README).
    pub doc: &'static str,
    /// The default as shown to users.
    pub default: fn() -> String,
    /// May a reload (SIGHUP, `tunnat reload`) change it?
    pub reload: bool,
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    File(PathBuf),
}

/// Shows a default value in help texts and the README.
pub(super) trait Shown {
    fn shown(&self) -> String;
}
macro_rules! shown_display {
    ($($t:ty),*) => {$(impl Shown for $t { fn shown(&self) -> String { self.to_string() } })*};
}
shown_display!(u16, u32, u64, usize, f64, bool, String);
impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}
impl Shown for Vec<String> {
    fn shown(&self) -> String {
        self.join(", ")
    }
}

macro_rules! reloads {
    (reload) => {
        true
    };
    (restart) => {
        false
    };
}

macro_rules! clap_arg {
    (Value, $ty:ty, $arg:expr) => {
        $arg.action(ArgAction::Set)
            .value_parser(clap::value_parser!($ty))
    };
    (List, $ty:ty, $arg:expr) => {
        $arg.action(ArgAction::Append)
    };
    (Switch, $ty:ty, $arg:expr) => {
        $arg.action(ArgAction::SetTrue)
    };
    (NoSwitch, $ty:ty, $arg:expr) => {
        $arg.action(ArgAction::SetTrue)
    };
}

macro_rules! clap_get {
    (Value, $ty:ty, $m:expr, $id:expr) => {
        $m.get_one::<$ty>($id).cloned()
    };
    (List, $ty:ty, $m:expr, $id:expr) => {
        $m.get_many::<String>($id).map(|v| v.cloned().collect())
    };
    (Switch, $ty:ty, $m:expr, $id:expr) => {
        $m.get_flag($id).then_some(true)
    };
    (NoSwitch, $ty:ty, $m:expr, $id:expr) => {
        $m.get_flag($id).then_some(false)
    };
}

macro_rules! options {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $kind:ident {
            flag: $flag:literal, key: $key:literal, value: $vn:literal,
            default: $def:expr, shown: $shown:literal, $reload:ident
        }
    )*) => {
        /// Everything the command line and the config file can say, each `None` where
        /// not given, with where each given value came from.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Settings {
            $(pub $field: Option<$ty>,)*
            /// Where each given value came from, by field name.
            pub origins: BTreeMap<&'static str, Origin>,
        }

        /// The table of options, in the order of `--help` and the README.
        pub static OPTIONS: &[OptionInfo] = &[$(
            OptionInfo {
                field: stringify!($field),
                flag: $flag,
                key: $key,
                value_name: $vn,
                kind: Kind::$kind,
                doc: concat!($($doc, "\n"),+),
                default: || {
                    let d: Option<$ty> = $def;
                    d.map(|v| v.shown()).unwrap_or_else(|| $shown.to_string())
                },
                reload: reloads!($reload),
            },
        )*];

        /// The effective values: what was given, else the default.
        #[allow(dead_code)]
        impl Settings {
            $(
                pub fn $field(&self) -> Option<$ty> {
                    self.$field.clone().or_else(|| $def)
                }
            )*

            /// `self` with every value that `top` sets replaced by `top`'s.
            pub fn overlay(mut self, top: &Settings) -> Settings {
                $(
                    if top.$field.is_some() {
                        self.$field = top.$field.clone();
                        if let Some(o) = top.origins.get(stringify!($field)) {
                            self.origins.insert(stringify!($field), o.clone());
                        }
                    }
                )*
                self
            }

            /// Reads the options present in a parsed config file.
            fn from_table(table: &toml::Table, file: &Path) -> Result<Settings> {
                let mut s = Settings::default();
                $(
                    if let Some(v) = lookup(table, $key) {
                        let v = if Kind::$kind == Kind::List && v.is_str() {
                            toml::Value::Array(vec![v.clone()])
                        } else {
                            v.clone()
                        };
                        s.$field = Some(v.try_into::<$ty>().map_err(|e| {
                            anyhow!("'{}' in {}: {}", $key, file.display(), e.message())
                        })?);
                        s.origins.insert(stringify!($field), Origin::File(file.to_path_buf()));
                    }
                )*
                Ok(s)
            }

            /// The names of the options whose effective value differs between `self`
            /// and `new` and that only a restart may change.
            pub fn restart_needed(&self, new: &Settings) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(
                    if !reloads!($reload) && self.$field() != new.$field() {
                        v.push($flag);
                    }
                )*
                v
            }
        }

        impl clap::FromArgMatches for Settings {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                let mut s = Settings::default();
                $(
                    s.$field = clap_get!($kind, $ty, m, stringify!($field));
                    if s.$field.is_some() {
                        s.origins.insert(stringify!($field), Origin::Flag);
                    }
                )*
                Ok(s)
            }
            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl clap::Args for Settings {
            fn augment_args(mut cmd: clap::Command) -> clap::Command {
                $(
                    let info = OPTIONS.iter().find(|o| o.field == stringify!($field));
                    let mut arg = Arg::new(stringify!($field)).long($flag);
                    if !$vn.is_empty() {
                        arg = arg.value_name($vn);
                    }
                    if let Some(info) = info {
                        arg = arg.help(info.help());
                    }
                    cmd = cmd.arg(clap_arg!($kind, $ty, arg));
                )*
                cmd
            }
            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }
    };
}

impl OptionInfo {
    /// The `--help` text: the doc and the default.
    pub fn help(&self) -> String {
        let doc = self.doc.trim().replace('`', "");
        let d = (self.default)();
        match self.kind {
            Kind::Switch | Kind::NoSwitch => doc,
            _ if d == "required" => format!("{doc} [required]"),
            _ => format!("{doc} [default: {d}]"),
        }
    }

    /// How the option is written on the command line, e.g. `--udp-timeout SECS`.
    pub fn usage(&self) -> String {
        match self.value_name {
            "" => format!("--{}", self.flag),
            v => format!("--{} {v}", self.flag),
        }
    }
}

/// The value at a dotted key of a TOML table.
pub(super) fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut v = table.get(parts.next()?)?;
    for p in parts {
        v = v.as_table()?.get(p)?;
    }
    Some(v)
}

/// Every key of `table` that is no option's key (or a table holding some), dotted.
pub(super) fn unknown_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if OPTIONS.iter().any(|o| o.key == key) {
            continue;
        }
        match v.as_table() {
            Some(t)
                if OPTIONS
                    .iter()
                    .any(|o| o.key.starts_with(&format!("{key}."))) =>
            {
                unknown_keys(t, &key, out)
            }
            _ => out.push(key),
        }
    }
}

/// The README's option table, as [`OPTIONS`] defines it.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| option | TOML key | default | reload | meaning |\n|---|---|---|---|---|\n");
    for o in OPTIONS {
        let d = (o.default)();
        let default = match (o.kind, d.as_str()) {
            (Kind::NoSwitch, "true") => "on".to_string(),
            (Kind::Switch, "false") => "off".to_string(),
            (_, d) if d.starts_with("--") => format!("`{d}`"),
            (_, d) => d.to_string(),
        };
        // A '|' would end the cell, even between backticks.
        let cell = |s: &str| s.trim().replace('\n', " ").replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            cell(&o.usage()),
            o.key,
            cell(&default),
            if o.reload { "yes" } else { "restart" },
            cell(o.doc)
        ));
    }
    out
}
