use super::*;
use proptest::prelude::*;

fn canon(s: &str) -> String {
    String::from_utf8(canonicalize(s.as_bytes()).unwrap()).unwrap()
}

/// RFC 8785 section 3.2.2: the worked example.
#[test]
fn rfc8785_main_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    assert_eq!(
        canon(input),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
}

/// RFC 8785 section 3.2.3: keys sort by UTF-16 code units, not by UTF-8 bytes.
#[test]
fn rfc8785_sorting_example() {
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
        \"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\
        \"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon(input), expected);
}

/// RFC 8785 appendix B: number serialisation samples (those that are I-JSON).
#[test]
fn rfc8785_number_samples() {
    for (input, expected) in [
        ("0", "0"),
        ("-0", "0"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("-1.7976931348623157e308", "-1.7976931348623157e+308"),
        ("9007199254740991", "9007199254740991"),
        ("-9007199254740991", "-9007199254740991"),
        ("1e23", "1e+23"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1e-7"),
        ("1.5", "1.5"),
        ("100.0", "100"),
    ] {
        assert_eq!(
            canon(&format!("[{input}]")),
            format!("[{expected}]"),
            "{input}"
        );
    }
}

#[test]
fn duplicate_keys_are_refused_at_any_depth_with_their_path() {
    let err = parse(br#"{"a":1,"a":2}"#).unwrap_err();
    assert!(
        matches!(&err, CanonError::DuplicateKey { key, path, line: 1, .. } if key == "a" && path == "$"),
        "{err:?}"
    );
    let err = parse(b"{\"x\":[{\"ok\":1},{\"b\":{\"c\":1,\n\"c\":2}}]}").unwrap_err();
    match &err {
        CanonError::DuplicateKey {
            key, path, line, ..
        } => {
            assert_eq!(key, "c");
            assert_eq!(path, "$.x[1].b");
            assert_eq!(*line, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("duplicate key \"c\" at $.x[1].b"),
        "{err}"
    );
    // Escapes that spell the same key are the same key.
    assert!(matches!(
        parse(br#"{"a":1,"\u0061":2}"#),
        Err(CanonError::DuplicateKey { .. })
    ));
}

#[test]
fn integers_beyond_the_safe_range_are_refused() {
    for bad in [
        "9007199254740992",
        "-9007199254740992",
        "18446744073709551615",
        "18446744073709551616",
        "1000000000000000000000",
        "123456789012345678901234567890",
        "1e16",
        "12345678901234567.0",
    ] {
        let err = parse(format!("{{\"n\":{{\"deep\":[{bad}]}}}}").as_bytes()).unwrap_err();
        match &err {
            CanonError::IntegerOutOfRange { path, line, .. } => {
                assert_eq!(path, "$.n.deep[0]", "{bad}");
                assert_eq!(*line, 1, "{bad}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Huge doubles in exponent form are ordinary I-JSON numbers.
    assert_eq!(canon("[1e21, -2E300, 1.5e22]"), "[1e+21,-2e+300,1.5e+22]");
    // A huge literal after a huge double is still caught, with its own path.
    let err = parse(br#"{"a":1e30,"b":"1000000000000000000000","c":[1000000000000000000000]}"#)
        .unwrap_err();
    assert!(
        matches!(&err, CanonError::IntegerOutOfRange { path, .. } if path == "$.c[0]"),
        "{err:?}"
    );
}

#[test]
fn lone_surrogates_are_refused() {
    for bad in [
        r#"["\ud800"]"#,
        r#"["\ud800x"]"#,
        r#"["\udc00"]"#,
        r#"["\uD83D\u0041"]"#,
    ] {
        let err = parse(bad.as_bytes()).unwrap_err();
        assert!(
            matches!(err, CanonError::LoneSurrogate { .. }),
            "{bad}: {err:?}"
        );
    }
    assert!(parse(r#"["\ud83d\ude00"]"#.as_bytes()).is_ok());
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let err = parse(b"{\"a\":\"\xff\"}").unwrap_err();
    assert_eq!(err, CanonError::InvalidUtf8 { offset: 6 });
    assert!(err.to_string().contains("byte 6"));
}

#[test]
fn syntax_errors_and_trailing_data_are_refused() {
    for bad in ["", "{", "{\"a\":}", "[1,]", "{} {}", "[1] x", "nul"] {
        assert!(
            matches!(parse(bad.as_bytes()), Err(CanonError::Syntax { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn nesting_is_bounded_by_a_typed_error_at_any_depth_beyond_the_limit() {
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    assert!(parse(nested(MAX_NESTING_DEPTH).as_bytes()).is_ok());
    let mixed = "{\"a\":[".repeat(MAX_NESTING_DEPTH / 2) + &"]}".repeat(MAX_NESTING_DEPTH / 2);
    assert!(parse(mixed.as_bytes()).is_ok());
    // One level more, far more (beyond serde_json's own limit), and never closed: the same
    // typed error, pointing at the first array beyond the limit.
    for text in [
        nested(MAX_NESTING_DEPTH + 1),
        nested(200),
        "[".repeat(100_000),
        format!("{{\"x\":{}", "[".repeat(100_000)),
    ] {
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                CanonError::TooDeep {
                    limit: MAX_NESTING_DEPTH,
                    line: 1,
                    column: _,
                }
            ),
            "{err:?}"
        );
    }
    let err = parse("[".repeat(100_000).as_bytes()).unwrap_err();
    assert_eq!(
        err,
        CanonError::TooDeep {
            limit: MAX_NESTING_DEPTH,
            line: 1,
            column: MAX_NESTING_DEPTH + 1,
        }
    );
    assert_eq!(
        err.to_string(),
        format!("nesting deeper than {MAX_NESTING_DEPTH} levels (line 1, column 101)")
    );
}

#[test]
fn check_refuses_unsafe_integers_built_in_memory() {
    let value = serde_json::json!({"ok": [1, 2.5], "bad": {"n": u64::MAX}});
    let err = check(&value).unwrap_err();
    assert!(
        matches!(&err, CanonError::IntegerOutOfRange { path, .. } if path == "$.bad.n"),
        "{err:?}"
    );
    assert!(to_vec(&value).is_err());
    assert!(digest(&value).is_err());
}

#[test]
fn digest_is_sha256_of_the_canonical_bytes() {
    let value = parse(br#"{ "b": 1, "a": [true, null] }"#).unwrap();
    let bytes = to_vec(&value).unwrap();
    assert_eq!(bytes, br#"{"a":[true,null],"b":1}"#);
    assert_eq!(digest(&value).unwrap(), Digest::of_bytes(&bytes));
}

#[test]
fn strings_escape_only_quote_backslash_and_controls() {
    let all: String = (0u8..0x20).map(char::from).collect();
    let value = Value::String(format!("{all}\"\\/\u{7f}é😀\u{e000}"));
    let expected = concat!(
        r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
        r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d"#,
        r#"\u001e\u001f\"\\/"#,
        "\u{7f}é😀\u{e000}\""
    );
    assert_eq!(
        String::from_utf8(to_vec(&value).unwrap()).unwrap(),
        expected
    );
}

#[test]
fn numbers_built_in_memory_print_as_ecmascript() {
    let value = serde_json::json!([
        0,
        -1,
        9007199254740991_i64,
        -9007199254740991_i64,
        100.0,
        -0.0,
        1e21,
        1e-7,
        0.000001,
        0.1,
        -1.5e300,
        5e-324
    ]);
    assert_eq!(
        String::from_utf8(to_vec(&value).unwrap()).unwrap(),
        "[0,-1,9007199254740991,-9007199254740991,100,0,1e+21,1e-7,0.000001,0.1,-1.5e+300,5e-324]"
    );
}

/// The writer walks objects in map order when no key needs UTF-16 sorting, which is only right
/// while `serde_json::Map` is a BTreeMap; a `preserve_order` feature turned on by any crate in
/// the build would make it insertion order.
#[test]
fn json_maps_iterate_in_byte_order() {
    let mut map = Map::new();
    for key in ["b", "\u{10000}", "a", "\u{e000}", "B"] {
        map.insert(key.to_owned(), Value::Null);
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    assert_eq!(keys, ["B", "a", "b", "\u{e000}", "\u{10000}"]);
}

#[test]
fn keys_sort_by_utf16_at_every_depth() {
    let value = serde_json::json!({
        "\u{e000}": {"\u{ffff}": 1, "\u{10ffff}": 2, "\u{10000}": 3, "z": 4},
        "\u{1f600}": [{"\u{fb33}": 5, "\u{1f600}": 6}],
        "a": 7
    });
    assert_eq!(
        String::from_utf8(to_vec(&value).unwrap()).unwrap(),
        "{\"a\":7,\"\u{1f600}\":[{\"\u{1f600}\":6,\"\u{fb33}\":5}],\
         \"\u{e000}\":{\"z\":4,\"\u{10000}\":3,\"\u{10ffff}\":2,\"\u{ffff}\":1}}"
    );
}

/// Larger than the digest buffer, so the hasher gets several updates and a partial last one.
#[test]
fn digest_of_a_large_value_matches_serde_jcs() {
    let items: Vec<Value> = (0..3000)
        .map(|i| serde_json::json!({"i": i, "x": f64::from(i) / 3.0, "s": format!("é\n{i}😀")}))
        .collect();
    let value = serde_json::json!({"items": items, "\u{e000}": 1, "\u{10000}": 2});
    let oracle = serde_jcs::to_vec(&value).unwrap();
    assert!(oracle.len() > 3 * 8192);
    assert_eq!(to_vec(&value).unwrap(), oracle);
    assert_eq!(digest(&value).unwrap(), Digest::of_bytes(&oracle));
}

/// Strings from the characters where JCS is easy to get wrong: the escaped ones, those printed
/// literally although other encoders escape them, and both sides of the UTF-16 sort quirk
/// (U+E000..U+FFFF sorts after surrogate pairs).
fn arb_tricky_string() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        prop::char::range('\u{0}', '\u{1f}'),
        prop::sample::select(vec!['"', '\\', '/', '\u{7f}', 'a', 'b']),
        prop::char::range('\u{80}', '\u{d7ff}'),
        prop::char::range('\u{e000}', '\u{ffff}'),
        prop::char::range('\u{10000}', '\u{10ffff}'),
    ];
    prop::collection::vec(c, 0..6).prop_map(String::from_iter)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let string = || prop_oneof![any::<String>(), arb_tricky_string()];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(Value::from),
        any::<f64>()
            .prop_filter("I-JSON number", |f| float_is_safe(*f))
            .prop_map(Value::from),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(string(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Writes a value with its object keys in reverse order and arbitrary whitespace.
fn write_shuffled(value: &Value, ws: &str, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                write_shuffled(item, ws, out);
            }
            out.push_str(ws);
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(ws);
                out.push(':');
                out.push_str(ws);
                write_shuffled(v, ws, out);
            }
            out.push_str(ws);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

proptest! {
    #[test]
    fn writer_matches_serde_jcs(value in arb_json()) {
        let oracle = serde_jcs::to_vec(&value).unwrap();
        prop_assert_eq!(&to_vec(&value).unwrap(), &oracle);
        prop_assert_eq!(digest(&value).unwrap(), Digest::of_bytes(&oracle));
    }

    #[test]
    fn canonicalisation_is_idempotent(value in arb_json()) {
        let once = to_vec(&value).unwrap();
        let twice = canonicalize(&once).unwrap();
        prop_assert_eq!(&once, &twice);
    }

    #[test]
    fn canonical_form_ignores_key_order_and_whitespace(
        value in arb_json(),
        ws in prop::sample::select(vec!["", " ", "\n", "\t \r\n  "]),
    ) {
        let mut text = String::new();
        write_shuffled(&value, ws, &mut text);
        prop_assert_eq!(canonicalize(text.as_bytes()).unwrap(), to_vec(&value).unwrap());
    }
}
