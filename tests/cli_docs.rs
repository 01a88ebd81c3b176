//! The man page and the shell completions in `contrib/` are generated from the command
//! line's definition (`tunnat::cli::Cli`), so they cannot drift from `--help`. This test
//! fails when they differ; `UPDATE_DOCS=1 cargo test --test cli_docs` rewrites them.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use tunnat::cli::Cli;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Every generated file, with its expected content.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut man = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut man)
        .expect("rendering the man page");
    files.push((contrib().join("man/tunnat.1"), man));
    for (shell, name) in [
        (Shell::Bash, "tunnat.bash"),
        (Shell::Zsh, "_tunnat"),
        (Shell::Fish, "tunnat.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "tunnat", &mut out);
        files.push((contrib().join("completions").join(name), out));
    }
    files
}

#[test]
fn man_page_and_completions_are_current() {
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    for (path, want) in generated() {
        if std::fs::read(&path).ok().as_deref() == Some(&want[..]) {
            continue;
        }
        if update {
            std::fs::create_dir_all(path.parent().expect("a directory")).expect("mkdir");
            std::fs::write(&path, &want).expect("writing a generated file");
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (UPDATE_DOCS=1 cargo test --test cli_docs rewrites them): {stale:?}"
    );
}

#[test]
fn the_man_page_names_every_option() {
    let man = String::from_utf8(generated().remove(0).1).expect("UTF-8");
    for o in tunnat::options::OPTIONS {
        // roff escapes '-' as '\-'.
        let flag = format!("\\-\\-{}", o.flag.replace('-', "\\-"));
        assert!(man.contains(&flag), "--{} is not in the man page", o.flag);
    }
}
