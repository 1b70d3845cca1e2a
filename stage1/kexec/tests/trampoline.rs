//! The trampoline's words against GNU binutils for aarch64, both ways:
//! objdump disassembles the words into the table's assembly, and `as`
//! assembles the table's assembly into the words. Needs
//! `binutils-aarch64-linux-gnu` (pulled in by `gcc-aarch64-linux-gnu`).

use std::path::Path;
use std::process::Command;

use racklet_kexec::trampoline::{build, CODE, DTB_LITERAL, ENTRY_LITERAL};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `ldr\tx0, 0x18` → `ldr x0, 0x18`.
fn squash(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(", ", ",")
        .replace(',', ", ")
}

#[test]
fn objdump_reads_the_table() {
    if !have("aarch64-linux-gnu-objdump") {
        println!("skipped: needs aarch64-linux-gnu-objdump");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("t.bin");
    std::fs::write(&bin, build(0x4820_0000, 0x4200_0000)).unwrap();
    let out = run(Command::new("aarch64-linux-gnu-objdump")
        .args(["-D", "-b", "binary", "-m", "aarch64"])
        .arg(&bin));
    // Lines like "   0:\t580000c0 \tldr\tx0, 0x18".
    let lines: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.split_once(":\t")?;
            u32::from_str_radix(addr.trim(), 16).ok()?;
            let (word, asm) = rest.split_once(" \t")?;
            Some((u32::from_str_radix(word.trim(), 16).ok()?, squash(asm)))
        })
        .collect();
    for (i, (word, asm)) in CODE.iter().enumerate() {
        assert_eq!(lines[i], (*word, asm.to_string()), "word {i}");
    }
    // The literal pool: low and high halves of each address.
    let words: Vec<u32> = lines.iter().map(|l| l.0).collect();
    assert_eq!(
        &words[DTB_LITERAL / 4..DTB_LITERAL / 4 + 2],
        [0x4820_0000, 0]
    );
    assert_eq!(
        &words[ENTRY_LITERAL / 4..ENTRY_LITERAL / 4 + 2],
        [0x4200_0000, 0]
    );
}

#[test]
fn as_assembles_the_table() {
    if !have("aarch64-linux-gnu-as") || !have("aarch64-linux-gnu-objcopy") {
        println!("skipped: needs aarch64-linux-gnu-as and aarch64-linux-gnu-objcopy");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    // Labels stand for the table's literal offsets; `.quad`s fill the pool.
    let mut src = String::new();
    for (_, asm) in CODE {
        let asm = asm
            .replace(&format!("{DTB_LITERAL:#x}"), "dtb")
            .replace(&format!("{ENTRY_LITERAL:#x}"), "entry");
        src.push_str(&format!("\t{asm}\n"));
    }
    src.push_str("dtb:\t.quad 0x48200000\nentry:\t.quad 0x42000000\n");
    std::fs::write(p("t.s"), &src).unwrap();
    run(Command::new("aarch64-linux-gnu-as")
        .arg("-o")
        .arg(p("t.o"))
        .arg(p("t.s")));
    run(Command::new("aarch64-linux-gnu-objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(p("t.o"))
        .arg(p("t.bin")));
    let assembled = std::fs::read(Path::new(&p("t.bin"))).unwrap();
    assert_eq!(assembled, build(0x4820_0000, 0x4200_0000), "{src}");
}
