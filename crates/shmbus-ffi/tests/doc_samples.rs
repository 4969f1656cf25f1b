//! The C samples of docs/C.md and README.md compile against the committed
//! header with `cc -std=c99 -Wall -Wextra -Werror`.
//!
//! A reader copies these samples; a function renamed, an argument added or a
//! constant dropped in the header would leave them broken with nothing
//! failing (the header's own checks and `tests/c/test_api.c` never read the
//! docs). Each ```c block is one translation unit: its preprocessor lines
//! (`#include`, `#define` with continuations) at file scope, the rest as the
//! body of `main`. Some samples use a `schema` or a topic `t` made by an
//! earlier one; those two exist at file scope, and a sample that declares its
//! own shadows them. Compile only (`-c`): nothing is linked or run, so no
//! segment is created.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn header_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The contents of every ```c block of `markdown`, in order, with the line
/// each starts on (1-based).
fn c_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match current.as_mut() {
            // A sample in a list item is indented with it.
            None if line.trim() == "```c" => current = Some((i + 2, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "a ```c block is not closed: {:?}",
        current
    );
    blocks
}

/// One C file for a sample: its preprocessor lines at file scope, the rest
/// in `main`.
fn translation_unit(sample: &str) -> String {
    let mut top = String::new();
    let mut body = String::new();
    let mut continued = false;
    for line in sample.lines() {
        if continued || line.trim_start().starts_with('#') {
            top.push_str(line);
            top.push('\n');
            continued = line.trim_end().ends_with('\\');
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    // The lines after the sample start in column 0, as a sample's own
    // statements do: a sample ending in an unbraced `if` would otherwise
    // get -Wmisleading-indentation for them.
    format!(
        "#include <stdint.h>\n#include <stdio.h>\n#include <shmbus.h>\n{top}\n\
         shmbus_schema schema;\nshmbus_topic t;\n\n\
         int main(void) {{\n{body}\n(void)schema;\n(void)t;\nreturn 0;\n}}\n"
    )
}

/// Compiles `source` as C99 with every warning an error; the compiler's
/// output on failure.
fn compile(dir: &Path, name: &str, source: &str) -> Result<(), String> {
    let file = dir.join(format!("{name}.c"));
    std::fs::write(&file, source).unwrap();
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "-o"])
        .arg(dir.join(format!("{name}.o")))
        .arg("-I")
        .arg(header_dir())
        .arg(&file)
        .output()
        .expect("run cc (a C compiler is needed to check the docs' C samples)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A scratch directory removed when dropped, also when an assertion fails
/// or the testkit's watchdog aborts.
fn scratch(tag: &str) -> shmbus_testkit::TempDir {
    shmbus_testkit::TempDir::new(&format!("doc-samples-{tag}"))
}

fn check_doc(doc: &str, at_least: usize) {
    let path = repo_root().join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let blocks = c_blocks(&text);
    assert!(
        blocks.len() >= at_least,
        "{doc}: {} ```c blocks, expected at least {at_least}",
        blocks.len()
    );
    let scratch = scratch(&doc.replace(['/', '.'], "-"));
    let mut failures = Vec::new();
    for (i, (line, sample)) in blocks.iter().enumerate() {
        let unit = translation_unit(sample);
        if let Err(e) = compile(scratch.path(), &format!("sample{i}"), &unit) {
            failures.push(format!(
                "{doc}:{line}: the C sample does not compile:\n{e}\nas compiled:\n{unit}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn c_md_samples_compile() {
    check_doc("docs/C.md", 4);
}

#[test]
fn readme_c_sample_compiles() {
    check_doc("README.md", 1);
}

/// The check itself: a sample calling a function the header does not
/// declare, or passing the wrong argument, fails to compile.
#[test]
fn a_broken_sample_is_caught() {
    let scratch = scratch("broken");
    let good = "shmbus_schema s;\nshmbus_schema_parse(\"struct A { x: u8 }\", &s);\n";
    compile(scratch.path(), "good", &translation_unit(good)).unwrap();
    let renamed = good.replace("shmbus_schema_parse", "shmbus_schema_parse_text");
    let err = compile(scratch.path(), "renamed", &translation_unit(&renamed)).unwrap_err();
    assert!(err.contains("shmbus_schema_parse_text"), "{err}");
    let wrong_arg = good.replace("&s)", "s)");
    compile(scratch.path(), "wrong_arg", &translation_unit(&wrong_arg)).unwrap_err();
    let unused = format!("{good}int unused_here = 1;\n");
    compile(scratch.path(), "unused", &translation_unit(&unused)).unwrap_err();
    let blocks = c_blocks("text\n```c\nint a;\n```\n```sh\nls\n```\n```c\nint b;\n```\n");
    assert_eq!(
        blocks,
        vec![(3, "int a;\n".to_string()), (9, "int b;\n".to_string())]
    );
}
