//! JSON gateway differential: the same sequence of HTTP/1.1 calls to etcd 3.4's grpc-gateway and to
//! modkv's must give the same status, content type and (ids normalised) the same body.
//!
//! `etcd_vs_etcd` proves the normalisation makes two independent etcd runs compare equal (and the
//! exact-value checks in `check_etcd_facts` prove the script exercises what it claims);
//! `etcd_vs_modkv` is the real check.

use modkv_tests::http::{post, request, HttpResponse};
use modkv_tests::*;

struct Call {
    method: &'static str,
    path: &'static str,
    body: String,
}

fn call(path: &'static str, body: &str) -> Call {
    Call { method: "POST", path, body: body.to_string() }
}

fn b64(s: &str) -> String {
    b64encode(s.as_bytes())
}

/// The script. Revisions: a=1 → 2, b=2 → 3, b=3 → 4, c=3 → 5, txn → 6, txn → 7, del b → 8.
fn script() -> Vec<Call> {
    // The election's leader key as the campaign below returns it (revision 13 in this script).
    let leader_key = format!(r#"{{"name":"{}","key":"{}","rev":"13","lease":"2000"}}"#, b64("e1"), b64("e1/7d0"));
    let e1 = format!(r#"{{"name":"{}"}}"#, b64("e1"));
    let (a, b, c, z) = (b64("a"), b64("b"), b64("c"), b64("z"));
    let big = |n: usize| format!(r#"{{"key":"{}","value":"{}"}}"#, b64("big"), b64(&"v".repeat(n)));
    vec![
        call("/v3/kv/put", &format!(r#"{{"key":"{a}","value":"{}"}}"#, b64("1"))),
        call("/v3/kv/put", &format!(r#"{{"key":"{b}","value":"{}","prev_kv":true}}"#, b64("2"))),
        call("/v3/kv/put", &format!(r#"{{"key":"{b}","value":"{}","prevKv":true}}"#, b64("3"))),
        call("/v3/kv/put", &format!(r#"{{"key":"{c}","value":"{}","unknown_field":[1,2]}}"#, b64("3"))),
        call("/v3/kv/range", &format!(r#"{{"key":"{a}","range_end":"{z}"}}"#)),
        call(
            "/v3/kv/range",
            &format!(r#"{{"key":"{a}","range_end":"{z}","sort_order":"DESCEND","sort_target":"MOD"}}"#),
        ),
        call("/v3/kv/range", &format!(r#"{{"key":"{a}","rangeEnd":"{z}","sortOrder":2,"limit":"1"}}"#)),
        call("/v3/kv/range", &format!(r#"{{"key":"{a}","range_end":"{z}","limit":2,"keys_only":true}}"#)),
        call("/v3/kv/range", &format!(r#"{{"key":"{a}","range_end":"{z}","count_only":true}}"#)),
        call("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","serializable":true}"#),
        call("/v3/kv/range", &format!(r#"{{"key":"{b}","revision":"3"}}"#)),
        call("/v3/kv/range", &format!(r#"{{"key":"{a}","revision":99}}"#)),
        call("/v3beta/kv/range", &format!(r#"{{"key":"{a}"}}"#)),
        call("/v3/kv/range", ""),
        call("/v3/kv/range", "null"),
        // Malformed input: Go's decoder and jsonpb's messages.
        call("/v3/kv/range", &format!(r#"{{"key":"{a}""#)),
        call("/v3/kv/range", r#"{"key":"YQ="}"#),
        call("/v3/kv/range", r#"{"key":"Y-_="}"#),
        call("/v3/kv/range", r#"{"key":123}"#),
        call("/v3/kv/range", "[]"),
        call("/v3/kv/range", "x"),
        call("/v3/kv/range", r#"{"key":"YQ==","limit":1.5}"#),
        call("/v3/kv/range", r#"{"key":"YQ==","limit":"abc"}"#),
        call("/v3/kv/range", r#"{"key":"YQ==","limit":"-"}"#),
        call("/v3/kv/range", r#"{"key":"YQ==","sort_order":"FOO"}"#),
        call("/v3/kv/range", r#"{"key":"YQ==","sort_order":true}"#),
        call("/v3/kv/range", r#"{"key":"YQ==","serializable":"true"}"#),
        call("/v3/kv/txn", r#"{"compare":{}}"#),
        call("/v3/kv/txn", r#"{"compare":[{"target":"NOPE"}]}"#),
        // Server errors.
        call("/v3/kv/put", &format!(r#"{{"key":"","value":"{}"}}"#, b64("x"))),
        call("/v3/kv/put", &format!(r#"{{"key":"{}","ignore_value":true}}"#, b64("nope"))),
        // Transactions.
        call(
            "/v3/kv/txn",
            &format!(
                r#"{{"compare":[{{"key":"{a}","target":"VALUE","value":"{}","result":"EQUAL"}}],"success":[{{"request_put":{{"key":"{}","value":"{}","prev_kv":true}}}},{{"requestRange":{{"key":"{a}"}}}}],"failure":[{{"request_delete_range":{{"key":"{a}"}}}}]}}"#,
                b64("1"),
                b64("t"),
                b64("1")
            ),
        ),
        call(
            "/v3/kv/txn",
            &format!(
                r#"{{"compare":[{{"key":"{a}","target":"MOD","mod_revision":"100","result":"GREATER"}}],"success":[{{"request_put":{{"key":"{a}"}}}}],"failure":[{{"request_delete_range":{{"key":"{}","prev_kv":true}}}},{{"request_txn":{{"success":[{{"request_range":{{"key":"{a}","count_only":true}}}}]}}}}]}}"#,
                b64("t")
            ),
        ),
        call("/v3/kv/txn", "{}"),
        call("/v3/kv/deleterange", &format!(r#"{{"key":"{b}","prev_kv":true}}"#)),
        call("/v3/kv/deleterange", &format!(r#"{{"key":"{}"}}"#, b64("nothing"))),
        // Compaction and compacted / future revisions.
        call("/v3/kv/compaction", r#"{"revision":"4"}"#),
        call("/v3/kv/range", &format!(r#"{{"key":"{b}","revision":"3"}}"#)),
        call("/v3/kv/range", &format!(r#"{{"key":"{c}","revision":"4"}}"#)),
        call("/v3/kv/compaction", r#"{"revision":"4","physical":true}"#),
        call("/v3/kv/compaction", r#"{"revision":"99"}"#),
        // Requests over --max-request-bytes (the server's check) and over what gRPC takes.
        call("/v3/kv/put", &big(1_600_000)),
        call("/v3/kv/put", &big(2_200_000)),
        // Cluster and maintenance.
        call("/v3/cluster/member/list", ""),
        call("/v3beta/cluster/member/list", "{}"),
        call("/v3/maintenance/status", ""),
        // HTTP-level answers.
        Call { method: "GET", path: "/v3/kv/range", body: String::new() },
        Call { method: "OPTIONS", path: "/v3/kv/range", body: String::new() },
        call("/v3/kv/nope", "{}"),
        call("/v3/kv/range/", "{}"),
        // Leases (explicit ids, so both servers use the same).
        call("/v3/lease/grant", r#"{"TTL":"60","ID":"1000"}"#),
        call("/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#),
        call("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}","lease":"1000"}}"#, b64("l"), b64("v"))),
        call("/v3/lease/leases", ""),
        call("/v3/kv/lease/leases", "{}"),
        call("/v3/lease/keepalive", r#"{"ID":"1000"}"#),
        call("/v3/lease/keepalive", "{"),
        call("/v3/lease/revoke", r#"{"ID":"1000"}"#),
        call("/v3/kv/lease/revoke", r#"{"ID":"1000"}"#),
        call("/v3/kv/lease/timetolive", r#"{"ID":"1000","keys":true}"#),
        call("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("l"))),
        call("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}","lease":"1000"}}"#, b64("l"), b64("v"))),
        call("/v3/watch", "{"),
        // The lock service: held at once when free (its key is "<name>/<lease hex>", attached to the
        // lease), held again by the same lease, released; a lease that does not exist is refused.
        call("/v3/lease/grant", r#"{"TTL":"60","ID":"2000"}"#),
        call("/v3/lock/lock", &format!(r#"{{"name":"{}","lease":"2000"}}"#, b64("mylock"))),
        call("/v3/lock/lock", &format!(r#"{{"name":"{}","lease":2000}}"#, b64("mylock"))),
        call("/v3/kv/range", &format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("mylock/"), b64("mylock0"))),
        call("/v3/lock/unlock", &format!(r#"{{"key":"{}"}}"#, b64("mylock/7d0"))),
        call("/v3/kv/range", &format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64("mylock/"), b64("mylock0"))),
        call("/v3/lock/lock", &format!(r#"{{"name":"{}","lease":"3000"}}"#, b64("mylock"))),
        call("/v3/lock/lock", "{"),
        // The election service: campaign (leads at once when alone), leader, proclaim, resign; then
        // "no leader", "not leader", a missing leader key, an unknown lease.
        call("/v3/election/campaign", &format!(r#"{{"name":"{}","lease":"2000","value":"{}"}}"#, b64("e1"), b64("v1"))),
        call("/v3/election/leader", &e1),
        call("/v3/election/proclaim", &format!(r#"{{"leader":{leader_key},"value":"{}"}}"#, b64("v2"))),
        call("/v3/election/leader", &e1),
        call("/v3/election/resign", &format!(r#"{{"leader":{leader_key}}}"#)),
        call("/v3/election/leader", &e1),
        call("/v3/election/proclaim", &format!(r#"{{"leader":{leader_key},"value":"{}"}}"#, b64("v3"))),
        call("/v3/election/proclaim", &format!(r#"{{"value":"{}"}}"#, b64("v3"))),
        call("/v3/election/campaign", &format!(r#"{{"name":"{}","lease":"3000","value":"{}"}}"#, b64("e1"), b64("v1"))),
    ]
}

#[derive(Debug, PartialEq)]
struct Entry {
    call: String,
    status: u16,
    content_type: Option<String>,
    cors: Option<String>,
    body: Value,
}

fn run(s: &Server) -> (Vec<Entry>, Vec<HttpResponse>) {
    let mut norm = Normalizer::for_server(s);
    let mut entries = Vec::new();
    let mut raw = Vec::new();
    for c in script() {
        let r = if c.method == "POST" {
            post(&s.endpoint(), c.path, &c.body)
        } else {
            request(&s.endpoint(), c.method, c.path, c.body.as_bytes())
        };
        let body = match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => norm.normalize(&v),
            Err(_) => Value::String(norm.replace_str(&r.text())),
        };
        let shown: String = c.body.chars().take(160).collect();
        entries.push(Entry {
            call: format!("{} {} {shown}", c.method, c.path),
            status: r.status,
            content_type: r.header("content-type").map(str::to_string),
            cors: r.header("access-control-allow-origin").map(str::to_string),
            body,
        });
        raw.push(r);
    }
    (entries, raw)
}

/// Exact values the script must produce (checked on every server, so a silent no-op cannot pass).
fn check_facts(raw: &[HttpResponse]) {
    let err = |i: usize, status: u16, code: i64, msg: &str| {
        assert_eq!(raw[i].status, status, "call {i}: {}", raw[i].text());
        assert_eq!(raw[i].json(), json!({"error": msg, "message": msg, "code": code}), "call {i}");
    };
    assert_eq!(raw[0].status, 200);
    assert_eq!(raw[0].json()["header"]["revision"], "2");
    assert!(raw[0].text().starts_with(r#"{"header":{"cluster_id":""#), "{}", raw[0].text());
    assert_eq!(
        raw[2].json()["prev_kv"],
        json!({"key":"Yg==","create_revision":"3","mod_revision":"3","version":"1","value":"Mg=="})
    );
    assert_eq!(
        raw[5].json()["kvs"],
        json!([
            {"key":"Yw==","create_revision":"5","mod_revision":"5","version":"1","value":"Mw=="},
            {"key":"Yg==","create_revision":"3","mod_revision":"4","version":"2","value":"Mw=="},
            {"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}
        ])
    );
    assert_eq!((raw[6].json()["more"].clone(), raw[6].json()["count"].clone()), (json!(true), json!("3")));
    assert_eq!(raw[7].json()["kvs"][0], json!({"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1"}));
    assert_eq!(keys_of(&raw[8].json()), vec!["count", "header"]);
    err(11, 400, 11, "etcdserver: mvcc: required revision is a future revision");
    err(13, 400, 3, "etcdserver: key is not provided");
    err(15, 400, 3, "unexpected EOF");
    err(16, 400, 3, "illegal base64 data at input byte 3");
    err(18, 400, 3, "json: cannot unmarshal number into Go value of type []uint8");
    err(21, 400, 3, "json: cannot unmarshal number 1.5 into Go value of type int64");
    err(24, 400, 3, "unknown value \"FOO\" for enum etcdserverpb.RangeRequest_SortOrder");
    err(30, 400, 3, "etcdserver: key not found");
    assert_eq!(raw[31].json()["succeeded"], json!(true));
    assert_eq!(raw[31].json()["responses"][0], json!({"response_put":{"header":{"revision":"6"}}}));
    assert_eq!(
        raw[32].json()["responses"][1],
        json!({"response_txn":{"header":{},"succeeded":true,"responses":[{"response_range":{"header":{"revision":"7"},"count":"1"}}]}})
    );
    assert_eq!(raw[34].json()["deleted"], "1");
    err(37, 400, 11, "etcdserver: mvcc: required revision has been compacted");
    err(41, 400, 3, "etcdserver: request is too large");
    err(42, 429, 8, "grpc: received message larger than max (2200010 vs. 2097152)");
    assert_eq!(raw[43].json()["members"][0]["name"], "gw");
    assert!(raw[43].json()["header"].get("revision").is_none());
    assert_eq!(raw[45].json()["version"], "3.4.23");
    assert_eq!((raw[46].status, raw[46].text().as_str()), (405, "Method Not Allowed\n"));
    assert_eq!((raw[47].status, raw[47].text().as_str()), (200, ""));
    assert_eq!((raw[48].status, raw[48].text().as_str()), (404, "Not Found\n"));
    assert_eq!(raw[50].json()["TTL"], "60");
    assert_eq!(raw[50].json()["ID"], "1000");
    assert_eq!(raw[53].json()["leases"], json!([{"ID":"1000"}]));
    assert_eq!(raw[55].json()["result"]["TTL"], "60");
    err(56, 500, 2, "unexpected EOF");
    err(58, 404, 5, "etcdserver: requested lease not found");
    assert_eq!(raw[59].json()["TTL"], "-1");
    assert!(raw[60].json().get("kvs").is_none());
    err(61, 404, 5, "etcdserver: requested lease not found");
    err(62, 500, 2, "unexpected EOF");
    // Lock: held, held again by the same lease (same key), released.
    assert_eq!(raw[64].json()["key"], b64("mylock/7d0"));
    assert_eq!(raw[65].json()["key"], b64("mylock/7d0"));
    assert_eq!(raw[66].json()["count"], "1");
    assert!(raw[68].json().get("kvs").is_none());
    err(69, 500, 2, "etcdserver: requested lease not found");
    err(70, 400, 3, "unexpected EOF");
    // Election: the campaign's leader key, proclaimed value, resigned.
    let leader = &raw[71].json()["leader"];
    assert_eq!((leader["key"].clone(), leader["rev"].clone()), (json!(b64("e1/7d0")), json!("13")), "{leader}");
    assert_eq!(raw[72].json()["kv"]["value"], b64("v1"));
    assert_eq!(raw[74].json()["kv"]["value"], b64("v2"));
    err(76, 500, 2, "election: no leader");
    err(77, 500, 2, "election: not leader");
    err(78, 500, 2, "\"leader\" field must be provided");
    err(79, 500, 2, "etcdserver: requested lease not found");
}

fn differential(a: Kind, b: Kind) {
    let servers = start_all(vec![(a, ServerOpts::new().name("gw")), (b, ServerOpts::new().name("gw"))]);
    let ((ta, ra), (tb, rb)) = std::thread::scope(|sc| {
        let ha = sc.spawn(|| run(&servers[0]));
        let hb = sc.spawn(|| run(&servers[1]));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    check_facts(&ra);
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x, y, "{a} and {b} answer differently");
    }
    assert_eq!(ta.len(), tb.len());
    check_facts(&rb);
}

#[test]
fn etcd_vs_etcd() {
    differential(Kind::Etcd, Kind::Etcd);
}

#[test]
#[cfg_attr(
    not(feature = "modkv"),
    ignore = "modkv variants are off: feature `modkv` of modkv-tests (on by default) is disabled"
)]
fn etcd_vs_modkv() {
    differential(Kind::Etcd, Kind::Modkv);
}
