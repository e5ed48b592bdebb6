#!/usr/bin/env python3
"""One etcd3gw (PyPI, 2.x) session against an etcd-3.4-compatible server's JSON gateway.

Usage: etcd3gw_session.py HOST PORT

Prints one JSON object per line, {"step": ..., "result": ...}, for the Rust test
(tests/tests/etcd3gw.rs) to compare between etcd 3.4 and modkv. Values the two servers
legitimately choose differently (lease ids, cluster/member ids, raft term, lock UUIDs, ports) are
normalised here; revisions are kept, since identical sessions must give identical revisions.
An exception is printed as a step result ({"exception": ...}) and the session goes on, so one
difference does not hide the rest. Every wait is bounded.
"""

import json
import sys
import threading
import time

from etcd3gw.client import Etcd3Client
from etcd3gw import exceptions

WATCH_WAIT_S = 10.0

host, port = sys.argv[1], int(sys.argv[2])
client = Etcd3Client(host=host, port=port, timeout=10)
lease_ids = {}


def text(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return v


def norm(v):
    """bytes -> str, lease ids -> <lease:N>, volatile header fields dropped, recursively."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in ("cluster_id", "member_id", "raft_term"):
                continue
            if k in ("lease", "ID") and str(x) in lease_ids:
                out[k] = lease_ids[str(x)]
                continue
            out[k] = norm(x)
        return out
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return text(v)


def step(name, fn):
    try:
        result = norm(fn())
    except Exception as e:  # noqa: BLE001 - the exception is the result
        body = getattr(e, "detail_text", None)
        try:
            body = json.loads(body)
        except (TypeError, ValueError):
            pass
        result = {"exception": type(e).__name__, "reason": norm(list(e.args)), "detail": norm(body)}
    print(json.dumps({"step": name, "result": result}, sort_keys=True), flush=True)


def with_meta(items):
    return [{"value": text(v), "meta": m} for v, m in items]


def new_lease(ttl):
    lease = client.lease(ttl)
    lease_ids.setdefault(str(lease.id), "<lease:%d>" % (len(lease_ids) + 1))
    return lease


# --- discovery, cluster -----------------------------------------------------------------------
step("api_path", lambda: client.api_path)
step("members", lambda: [
    {"name": m.get("name"), "peer_urls": len(m.get("peerURLs", [])),
     "client_urls_ok": [u == "http://%s:%d" % (host, port) for u in m.get("clientURLs", [])]}
    for m in client.members()])
step("status_leader_is_self", lambda: (lambda s: s["leader"] == s["header"]["member_id"])(client.status()))

# --- put / get ----------------------------------------------------------------------------------
step("put a", lambda: client.put("a", "1"))
step("put foo/1", lambda: client.put("foo/1", "one"))
step("put foo/2", lambda: client.put("foo/2", "two"))
step("put foo/3", lambda: client.put("foo/3", "three"))
step("put foo0", lambda: client.put("foo0", "outside"))
step("put a again", lambda: client.put("a", "2"))
step("put binary", lambda: client.put(b"bin\x00\xff", b"\x01\x02"))
step("get a", lambda: client.get("a"))
step("get a metadata", lambda: with_meta(client.get("a", metadata=True)))
step("get missing", lambda: client.get("missing"))
step("get binary", lambda: [list(v) for v in client.get(b"bin\x00\xff")])
step("get_prefix foo/", lambda: with_meta(client.get_prefix("foo/")))
step("get_prefix foo/ descend by value", lambda: with_meta(client.get_prefix("foo/", "descend", "value")))
step("get range limit 2", lambda: with_meta(client.get("foo/", metadata=True, range_end="foo0", limit=2)))
step("get keys_only", lambda: with_meta(client.get("foo/", metadata=True, range_end="foo0", keys_only=True)))
step("get at revision 2", lambda: with_meta(client.get("a", metadata=True, revision=2)))
step("get min_mod_revision", lambda: with_meta(client.get("\0", metadata=True, range_end="\0", min_mod_revision=5)))
step("get_all", lambda: [x["meta"]["key"] for x in with_meta(client.get_all())])
step("get future revision", lambda: client.get("a", revision=1000))

# --- transactions ---------------------------------------------------------------------------------
step("create x", lambda: client.create("x", "1"))
step("create x again", lambda: client.create("x", "2"))
step("replace x 1->2", lambda: client.replace("x", "1", "2"))
step("replace x 1->3", lambda: client.replace("x", "1", "3"))
step("get x", lambda: client.get("x"))
step("transaction", lambda: client.transaction({
    "compare": [{"key": "eA==", "result": "EQUAL", "target": "VERSION", "version": 2}],
    "success": [{"request_range": {"key": "eA=="}}, {"request_put": {"key": "eQ==", "value": "eQ==", "prev_kv": True}}],
    "failure": [],
}))

# --- delete -------------------------------------------------------------------------------------
step("delete a", lambda: client.delete("a"))
step("delete a again", lambda: client.delete("a"))
step("get a after delete", lambda: client.get("a"))
step("delete foo/1 prev_kv", lambda: client.delete("foo/1", prev_kv=True))
step("delete_prefix foo/", lambda: client.delete_prefix("foo/"))
step("get_prefix foo/ after delete", lambda: client.get_prefix("foo/"))
step("get foo0 survives", lambda: client.get("foo0"))

# --- leases -------------------------------------------------------------------------------------
lease = new_lease(60)
step("lease id positive", lambda: lease.id > 0)
step("put lk1 with lease", lambda: client.put("lk1", "v1", lease=lease))
step("put lk2 with lease", lambda: client.put("lk2", "v2", lease=lease))
step("get lk1 metadata", lambda: with_meta(client.get("lk1", metadata=True)))
step("lease ttl in (58, 60]", lambda: 58 < lease.ttl() <= 60)
step("lease timetolive", lambda: client.post(client.get_url("/kv/lease/timetolive"),
                                               json={"ID": lease.id, "keys": True}).get("grantedTTL"))
step("lease keys", lambda: sorted(text(k) for k in lease.keys()))
step("lease refresh", lambda: lease.refresh())
step("lease leases", lambda: client.post(client.get_url("/lease/leases"), json={}).get("leases"))
step("lease revoke", lambda: lease.revoke())
step("get lk1 after revoke", lambda: client.get("lk1"))
step("get lk2 after revoke", lambda: client.get("lk2"))
step("lease ttl after revoke", lambda: lease.ttl())
step("lease keys after revoke", lambda: lease.keys())
step("lease refresh after revoke", lambda: lease.refresh())
step("lease revoke again", lambda: lease.revoke())

# --- lock (lease + txn) ---------------------------------------------------------------------------
lock = client.lock(id="L1", ttl=30)
step("lock acquire", lambda: lock.acquire())
lease_ids.setdefault(str(lock.lease.id), "<lease:%d>" % (len(lease_ids) + 1))
other = client.lock(id="L1", ttl=30)
step("other lock acquire fails", lambda: other.acquire())
lease_ids.setdefault(str(other.lease.id), "<lease:%d>" % (len(lease_ids) + 1))
step("lock is_acquired", lambda: lock.is_acquired())
step("other is_acquired", lambda: other.is_acquired())
step("lock release", lambda: lock.release())
step("lock release again", lambda: lock.release())
step("other lock acquire now", lambda: other.acquire())
lease_ids.setdefault(str(other.lease.id), "<lease:%d>" % (len(lease_ids) + 1))
step("other release", lambda: other.release())


# --- watch --------------------------------------------------------------------------------------
def event(ev):
    kv = ev["kv"]
    return {
        "type": ev.get("type", "PUT"),
        "key": text(kv["key"]),
        "value": text(kv.get("value", b"")),
        "create_revision": kv.get("create_revision"),
        "mod_revision": kv.get("mod_revision"),
        "version": kv.get("version"),
        "prev_value": text(ev["prev_kv"].get("value", "")) if "prev_kv" in ev else None,
    }


def watch_session(name, start_watch, actions, expected_count):
    """Starts a watch, consumes it in a thread, runs `actions` after the watch exists, waits (bounded)
    for `expected_count` events, cancels, and records what was seen."""
    seen = []
    done = threading.Event()
    try:
        events, cancel = start_watch()
    except Exception as e:  # noqa: BLE001
        step(name, lambda: (_ for _ in ()).throw(e))
        return

    def consume():
        try:
            for ev in events:
                seen.append(event(ev))
                if len(seen) >= expected_count:
                    break
        finally:
            done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    actions()
    complete = done.wait(WATCH_WAIT_S)
    cancel()
    t.join(2.0)
    step(name, lambda: {"complete": complete, "events": seen})


def prefix_actions():
    client.put("w/1", "a")
    client.put("w/2", "b")
    client.put("outside", "x")
    client.put("w/1", "c")
    client.delete("w/2")
    client.delete_prefix("w/")


watch_session("watch_prefix w/", lambda: client.watch_prefix("w/"), prefix_actions, 5)
watch_session("watch key k with prev_kv", lambda: client.watch("k", prev_kv=True),
              lambda: [client.put("k", "1"), client.put("kk", "no"), client.put("k", "2"), client.delete("k")], 3)
step("revision after watches", lambda: client.transaction({})["header"]["revision"])
# History: a watch from a past revision replays what happened to w/1 without new writes.
watch_session("watch w/1 from revision 23", lambda: client.watch("w/1", start_revision=23), lambda: None, 2)
watch_session("watch_prefix w/ NODELETE", lambda: client.watch_prefix("w/", filters=["NODELETE"]),
              lambda: [client.put("w/3", "d"), client.delete("w/3"), client.put("w/3", "e")], 2)
# The server still answers after the watches were cancelled (connections dropped by the client).
time.sleep(0.2)
step("get w/3 after watches", lambda: with_meta(client.get("w/3", metadata=True)))

# --- errors as etcd3gw surfaces them ------------------------------------------------------------
step("put empty key", lambda: client.put("", "v"))
step("lease grant negative id", lambda: client.post(client.get_url("/lease/grant"), json={"TTL": 5, "ID": -1}))
step("final revision", lambda: client.transaction({})["header"]["revision"])
