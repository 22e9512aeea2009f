//! `admission digest | canon | put | cat` over the real binary.

use protocol::Digest;
use tests::Scratch;

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

#[test]
fn digest_of_an_artifact_ignores_formatting_and_key_order() {
    let s = Scratch::new();
    s.write(
        "a.json",
        r#"{ "kind": "mechanism.plan/v0", "b": [1, 2.50], "a": "x" }"#,
    );
    s.write(
        "b.json",
        "{\"a\":\"x\",\n\"b\":[1,2.5],\"kind\":\"mechanism.plan/v0\"}\n",
    );
    let a = s.admission().args(["digest", "a.json"]).assert().success();
    let b = s.admission().args(["digest", "b.json"]).assert().success();
    let a = stdout_of(a.get_output());
    assert_eq!(a, stdout_of(b.get_output()));
    let expected = Digest::of_bytes(br#"{"a":"x","b":[1,2.5],"kind":"mechanism.plan/v0"}"#);
    assert_eq!(a.trim(), expected.to_string());

    let canon = s.admission().args(["canon", "a.json"]).assert().success();
    assert_eq!(
        canon.get_output().stdout,
        br#"{"a":"x","b":[1,2.5],"kind":"mechanism.plan/v0"}"#
    );
}

#[test]
fn non_ijson_input_is_refused_with_the_problem_named() {
    let s = Scratch::new();
    for (name, text, needle) in [
        (
            "dup.json",
            r#"{"a":{"k":1,"k":2}}"#,
            "duplicate key \"k\" at $.a",
        ),
        ("big.json", r#"{"n":[9007199254740993]}"#, "$.n[0]"),
        ("surrogate.json", r#"["\udead"]"#, "lone surrogate"),
        ("broken.json", r#"{"a":"#, "invalid JSON"),
    ] {
        s.write(name, text);
        for command in ["digest", "canon"] {
            let out = s.admission().args([command, name]).assert().code(2);
            let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
            assert!(stderr.contains(needle), "{command} {name}: {stderr}");
            assert!(
                out.get_output().stdout.is_empty(),
                "{command} {name} printed output"
            );
        }
    }
    s.write("utf8.json", b"{\"a\":\"\xc3\x28\"}");
    let out = s.admission().args(["digest", "utf8.json"]).assert().code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("invalid UTF-8 at byte 6"));
}

#[test]
fn raw_digest_hashes_the_bytes() {
    let s = Scratch::new();
    s.write("patch.diff", "not json at all\n");
    let out = s
        .admission()
        .args(["digest", "--raw", "patch.diff"])
        .assert()
        .success();
    assert_eq!(
        stdout_of(out.get_output()).trim(),
        Digest::of_bytes(b"not json at all\n").to_string()
    );
}

#[test]
fn put_then_cat_round_trips_and_json_output_is_machine_readable() {
    let s = Scratch::new();
    let payload: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    s.write("blob.bin", &payload);
    let out = s
        .admission()
        .args(["--json", "put", "blob.bin"])
        .assert()
        .success();
    let reply: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let digest = reply["digest"].as_str().unwrap().to_owned();
    assert_eq!(digest, Digest::of_bytes(&payload).to_string());
    assert!(s
        .path(".mechanism/objects/sha256")
        .join(&digest[7..9])
        .join(&digest[9..])
        .exists());

    let cat = s.admission().args(["cat", &digest]).assert().success();
    assert_eq!(cat.get_output().stdout, payload);
}

#[test]
fn cat_of_a_corrupted_object_fails_with_integrity_mismatch_and_prints_nothing() {
    let s = Scratch::new();
    s.write("blob.txt", "hello, store\n");
    let out = s
        .admission()
        .args(["--store", "st", "put", "blob.txt"])
        .assert()
        .success();
    let digest = stdout_of(out.get_output()).trim().to_owned();
    let object = s
        .path("st/objects/sha256")
        .join(&digest[7..9])
        .join(&digest[9..]);
    let mut perms = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).unwrap();
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();

    let out = s
        .admission()
        .args(["--store", "st", "cat", &digest])
        .assert()
        .code(5);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("INTEGRITY_MISMATCH"), "{stderr}");
    assert!(out.get_output().stdout.is_empty());

    let out = s
        .admission()
        .args(["--json", "--store", "st", "cat", &digest])
        .assert()
        .code(5);
    let reply: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reply["error"]["code"], "INTEGRITY_MISMATCH");
}

#[test]
fn cat_of_unknown_or_malformed_digests_fails_clearly() {
    let s = Scratch::new();
    let unknown = Digest::of_bytes(b"never stored").to_string();
    let out = s.admission().args(["cat", &unknown]).assert().code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("UNKNOWN_ARTIFACT"));
    let out = s.admission().args(["cat", "sha256:XYZ"]).assert().code(2);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("INVALID_PARAMS"));
}

#[test]
fn cat_takes_a_unique_prefix_and_lists_the_candidates_of_an_ambiguous_one() {
    let s = Scratch::new();
    s.write("a.txt", "hello\n");
    let put = s.admission().args(["put", "a.txt"]).assert().success();
    let digest = stdout_of(put.get_output()).trim().to_owned();
    let hex = &digest["sha256:".len()..];
    for given in [&hex[..8], &digest[..7 + 12]] {
        let cat = s.admission().args(["cat", given]).assert().success();
        assert_eq!(cat.get_output().stdout, b"hello\n", "{given}");
    }
    // A second object sharing the first 8 hex digits, filed by hand: two real ones are too
    // rare to find.
    let twin = format!("{}{}", &hex[..8], "0".repeat(56));
    s.write(
        &format!(".mechanism/objects/sha256/{}/{}", &twin[..2], &twin[2..]),
        "x",
    );
    let out = s.admission().args(["cat", &hex[..8]]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("ambiguous"), "{stderr}");
    assert!(
        stderr.contains(&digest) && stderr.contains(&format!("sha256:{twin}")),
        "{stderr}"
    );
}
