//! ACLs: the key specs let Redis apply read/write key permissions to every key command;
//! the keyless tag commands apply them through the module (HC.TAGKEYS and HC.TAGCARD see
//! only readable keys, HC.DELTAG is all-or-nothing); a client user needs the invalidation
//! channel (`&hc:invalidations`) and works with a minimal command set.

use hybridcache::{EntryOptions, HybridCache};
use hybridcache_protocol::{command, DEFAULT_CHANNEL};
use hybridcache_tests::client_support::{build, get_value};
use hybridcache_tests::hc::{call, hc_set, query, tagcard, tagkeys};
use hybridcache_tests::RedisServer;
use std::time::Duration;

fn set_user(admin: &mut redis::Connection, name: &str, rules: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(name)
        .arg("reset")
        .arg("on")
        .arg(">pw");
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = query(admin, &cmd);
}

fn login(server: &RedisServer, name: &str) -> redis::Connection {
    let mut con = server.connection();
    let _: () = query(&mut con, redis::cmd("AUTH").arg(name).arg("pw"));
    con
}

fn is_noperm(reply: Result<redis::Value, String>) -> bool {
    matches!(reply, Err(e) if e.starts_with("NOPERM"))
}

#[test]
fn read_only_and_write_only_key_permissions_apply_to_each_command() {
    let server = RedisServer::new();
    let mut admin = server.connection();
    hc_set(&mut admin, "app1:a", "1", &["t"]);
    hc_set(&mut admin, "app1:b", "2", &["t"]);
    set_user(&mut admin, "reader", &["%R~app1:*", "+@all"]);
    set_user(&mut admin, "writer", &["%W~app1:*", "+@all"]);

    let mut reader = login(&server, "reader");
    for words in [
        vec![command::GET, "app1:a"],
        vec![command::MGET, "app1:a", "app1:b"],
        vec![command::FETCH, "app1:a"],
        vec![command::TAGS, "app1:a"],
    ] {
        assert!(call(&mut reader, &words).is_ok(), "reader: {words:?}");
    }
    for words in [
        vec![command::SET, "app1:a", "x"],
        vec![command::DEL, "app1:a"],
        vec![command::STALE, "app1:a"],
        vec![command::GET, "app2:a"],
        vec![command::DELTAG, "t"],
        vec![command::STALETAG, "t"],
        vec![command::DELTAGALL, "t", "t"],
    ] {
        assert!(is_noperm(call(&mut reader, &words)), "reader: {words:?}");
    }
    assert_eq!(tagkeys(&mut reader, "t"), ["app1:a", "app1:b"]);

    let mut writer = login(&server, "writer");
    assert!(call(&mut writer, &[command::SET, "app1:c", "3", "TAGS", "t"]).is_ok());
    for words in [
        vec![command::GET, "app1:a"],
        vec![command::FETCH, "app1:a"],
        vec![command::SET, "app2:a", "x"],
    ] {
        assert!(is_noperm(call(&mut writer, &words)), "writer: {words:?}");
    }
    // Writing is not reading: the tag's keys stay hidden from a write-only user.
    assert!(tagkeys(&mut writer, "t").is_empty());
    assert_eq!(tagcard(&mut writer, "t"), 0);
    assert_eq!(
        call(&mut writer, &[command::DEL, "app1:c"]),
        Ok(redis::Value::Int(1))
    );
    assert_eq!(tagcard(&mut admin, "t"), 2);
}

#[test]
fn a_tenant_sees_and_removes_only_its_own_keys_through_tags() {
    let server = RedisServer::new();
    let mut admin = server.connection();
    hc_set(&mut admin, "app1:x", "v", &["shared", "mine"]);
    hc_set(&mut admin, "app2:x", "v", &["shared"]);
    hc_set(&mut admin, "app2:y", "v", &["shared"]);
    set_user(&mut admin, "app1", &["~app1:*", "+@all"]);
    let mut tenant = login(&server, "app1");

    assert_eq!(tagkeys(&mut tenant, "shared"), ["app1:x"]);
    assert_eq!(
        tagcard(&mut tenant, "shared"),
        1,
        "other tenants' keys are not counted"
    );
    assert_eq!(tagcard(&mut admin, "shared"), 3);
    // All or nothing: a tag holding a key the user may not delete is refused whole.
    let removed = call(
        &mut tenant,
        &[command::DELTAGALL, "shared", "mine", "shared"],
    );
    assert_eq!(
        removed,
        Ok(redis::Value::Int(1)),
        "the intersection holds only the tenant's key"
    );
    hc_set(&mut admin, "app1:x", "v", &["shared", "mine"]);
    hc_set(&mut admin, "app2:x", "v", &["shared", "mine"]);
    let refused = call(&mut tenant, &[command::DELTAGALL, "shared", "mine"]).unwrap_err();
    assert!(refused.starts_with("NOPERM"), "{refused}");
    assert_eq!(tagcard(&mut admin, "mine"), 2, "nothing removed");
    hc_set(&mut admin, "app2:x", "v", &["shared"]);
    for refused_command in [command::DELTAG, command::STALETAG, command::DELTAGALL] {
        let refused = call(&mut tenant, &[refused_command, "shared"]).unwrap_err();
        assert!(
            refused.starts_with("NOPERM"),
            "{refused_command}: {refused}"
        );
        assert_eq!(tagcard(&mut admin, "shared"), 3, "nothing removed");
    }
    assert_eq!(
        call(&mut tenant, &[command::DELTAG, "mine"]),
        Ok(redis::Value::Int(1))
    );
    assert_eq!(tagkeys(&mut admin, "shared"), ["app2:x", "app2:y"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_needs_the_channel_and_a_minimal_command_set() {
    let server = RedisServer::new();
    let mut admin = server.connection();
    // What a service's user needs: its key prefix, the channel, and these commands.
    let client_rules = [
        "~svc:*",
        "+hc.fetch",
        "+hc.hello",
        "+hc.set",
        "+hc.del",
        "+hc.deltag",
        "+subscribe",
        "+ping",
        "+hello",
    ];
    let mut with_channel = client_rules.to_vec();
    let channel_rule = format!("&{DEFAULT_CHANNEL}");
    with_channel.push(&channel_rule);
    set_user(&mut admin, "svc", &with_channel);
    set_user(&mut admin, "nochannel", &client_rules);

    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}/", server.port());
    let cache = build(HybridCache::builder(url("svc")).namespace("svc:")).await;
    cache
        .set("k", 1u32, EntryOptions::new().tags(["t"]))
        .await
        .unwrap();
    assert_eq!(get_value::<u32>(&cache, "k").await, Some(1));
    assert_eq!(cache.remove_by_tag("t").await.unwrap(), 1);
    assert!(cache.remove("k").await.is_ok());

    let refused = HybridCache::builder(url("nochannel"))
        .subscribe_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        // Redis says "channels", Valkey "a channel".
        refused.contains("NoPerm") && refused.contains("channel"),
        "the error names the missing channel permission: {refused}"
    );
}
