//! The shipped completion scripts, loaded by the real shells: subcommand options and
//! nested verbs complete in bash, zsh and fish.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::BIN;

/// `f2b-mailguard generate SHELL` into `dir/file`, as install.sh and the package do.
fn script(dir: &Path, shell: &str, file: &str) -> String {
    let text = stdout(Command::new(BIN).args(["generate", shell]));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs `shell -c code` with `args` as $1... (fish: $argv); its stdout.
fn shell(shell: &str, code: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(shell);
    cmd.arg("-c").arg(code);
    // bash and zsh take $0 first.
    if shell != "fish" {
        cmd.arg(shell);
    }
    stdout(cmd.args(args))
}

/// The stdout of `cmd`, which must succeed.
fn stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (tests/run installs the shells)"));
    support::assert_success(format_args!("{cmd:?}"), &out);
    String::from_utf8(out.stdout).unwrap()
}

/// Bash's candidates for the command line `line` (the last word is being completed),
/// through the function the script registers with `complete -F`, called the way
/// readline calls it.
fn bash_complete(file: &str, line: &str) -> Vec<String> {
    let code = r#"
        source "$1" || exit 1
        fn=$(complete -p f2b-mailguard | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
        [ -n "$fn" ] || { echo "no completion registered" >&2; exit 1; }
        read -ra COMP_WORDS <<<"$2"
        [[ $2 == *' ' ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE=$2 COMP_POINT=${#2}
        "$fn" f2b-mailguard "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    shell("bash", code, &[file, line])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_subcommand_options_and_nested_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "bash", "f2b-mailguard");
    // The top level always worked; what follows a subcommand did not (clap#6421).
    assert_eq!(bash_complete(&file, "f2b-mailguard sta"), ["status"]);
    assert_eq!(bash_complete(&file, "f2b-mailguard status --j"), ["--json"]);
    assert_eq!(bash_complete(&file, "f2b-mailguard whitelist a"), ["add"]);
    let add = bash_complete(&file, "f2b-mailguard whitelist add --");
    assert!(add.contains(&"--note".to_owned()), "{add:?}");
    assert!(add.contains(&"--user".to_owned()), "{add:?}");
    // A hyphenated subcommand and a global option before it.
    let scan = bash_complete(&file, "f2b-mailguard --db /x queue-scan --");
    assert!(scan.contains(&"--quiet".to_owned()), "{scan:?}");
    assert_eq!(
        bash_complete(&file, "f2b-mailguard release --p"),
        ["--purge-held"]
    );
}

#[test]
fn fish_completes_subcommand_options_and_nested_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "fish", "f2b-mailguard.fish");
    let complete = |line: &str| -> Vec<String> {
        shell(
            "fish",
            "source $argv[1]; complete -C $argv[2]",
            &[&file, line],
        )
        .lines()
        // "candidate<TAB>description"
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
    };
    assert_eq!(complete("f2b-mailguard status --j"), ["--json"]);
    assert_eq!(complete("f2b-mailguard whitelist a"), ["add"]);
    assert!(complete("f2b-mailguard whitelist add --").contains(&"--note".to_owned()));
    assert_eq!(complete("f2b-mailguard release --p"), ["--purge-held"]);
}

/// zsh completes only inside its line editor, which needs a terminal. Short of one,
/// this loads the script the way a user's shell does (compinit from fpath, by its
/// `#compdef` line), then runs the registered function for a command line with
/// `_arguments` and `_describe` replaced by stand-ins that follow the dispatch
/// (`->state` to the next typed word) and print what the real ones would offer.
#[test]
fn zsh_loads_the_completion_and_offers_subcommand_options_and_nested_verbs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("fn")).unwrap();
    script(&dir.path().join("fn"), "zsh", "_f2b-mailguard");
    let code = r#"
        fpath=("$1" $fpath)
        autoload -U compinit && compinit -u -d "$1/../zcompdump" || exit 1
        print -r -- "registered: $_comps[f2b-mailguard]"
        typed=(${(z)2})
        [[ $2 == *' ' ]] && typed+=("")
        level=2
        _arguments() {
            local spec
            for spec in "$@"; do
                if [[ $spec == *':->'* && $level -lt ${#typed} ]]; then
                    state=${spec##*->} line=($typed[level]) level=$((level + 1))
                    return 0
                fi
            done
            if (( level == ${#typed} )); then
                for spec in "$@"; do
                    [[ $spec == ':: :'* ]] && { ${spec#:: :}; return 0; }
                done
            fi
            for spec in "$@"; do
                [[ $spec == -* || $spec == '('*')'-* ]] && print -r -- "option: ${spec#\(*\)}"
            done
            return 0
        }
        _describe() { local c; for c in ${(P)4}; do print -r -- "verb: $c"; done; }
        words=($typed) CURRENT=${#typed}
        $_comps[f2b-mailguard]
    "#;
    let fndir = dir.path().join("fn");
    let run = |line: &str| shell("zsh", code, &[fndir.to_str().unwrap(), line]);

    let status = run("f2b-mailguard status --j");
    assert!(
        status.starts_with("registered: _f2b-mailguard\n"),
        "{status}"
    );
    assert!(
        status.contains("option: --json[Machine-readable"),
        "{status}"
    );
    assert!(status.contains("option: --window=["), "{status}");
    assert!(!status.contains("verb:"), "{status}");

    let whitelist = run("f2b-mailguard whitelist a");
    assert!(whitelist.contains("verb: add:Never count"), "{whitelist}");
    assert!(whitelist.contains("verb: remove:"), "{whitelist}");

    let add = run("f2b-mailguard whitelist add --");
    assert!(add.contains("option: --note=["), "{add}");
    assert!(!add.contains("verb:"), "{add}");
}
