//! Table-driven tests of the policy: selectors, documents, reason rules, default deny, the
//! union of several roles, grants, and the built-in roles.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const REASON: &str = "INC-4711 disk filling up on web-1";
const NO_PARAMETERS: Parameters = BTreeMap::new();

fn policy(text: &str) -> Policy {
    Policy::from_file_bytes(Path::new("policy.toml"), text.as_bytes()).unwrap()
}

fn user(roles: &[&str]) -> User {
    User {
        id: 7,
        name: "alice".into(),
        roles: roles.iter().map(|r| Role::parse(r).unwrap()).collect(),
        disabled: false,
        grants: Grants::default(),
    }
}

fn target(id: &str, name: &str, region: &str, tags: &[(&str, &str)]) -> Target {
    Target {
        id: id.into(),
        name: name.into(),
        platform: "Linux".into(),
        ping_status: "Online".into(),
        region: region.into(),
        account: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn web1() -> Target {
    target(
        "i-0abc0001",
        "web-1",
        "us-east-1",
        &[("Name", "web-1"), ("env", "prod"), ("team", "web")],
    )
}

fn lab() -> Target {
    target(
        "mi-0def0003",
        "lab-pi",
        "eu-west-1",
        &[("env", "dev"), ("team", "lab")],
    )
}

#[test]
fn selectors() {
    // (selector as TOML, target, selected)
    let table: &[(&str, Target, bool)] = &[
        ("ids = [\"*\"]", web1(), true),
        ("ids = [\"i-0abc*\"]", web1(), true),
        ("ids = [\"i-0abc*\"]", lab(), false),
        ("ids = [\"i-0abc0001\"]", web1(), true),
        ("ids = [\"i-0abc000\"]", web1(), false),
        ("ids = [\"i-*\", \"mi-*\"]", lab(), true),
        ("names = [\"web-*\"]", web1(), true),
        ("names = [\"web-*\"]", lab(), false),
        ("names = [\"{web,lab}-*\"]", lab(), true),
        ("names = [\"WEB-*\"]", web1(), false),
        ("regions = [\"eu-*\"]", lab(), true),
        ("regions = [\"eu-*\"]", web1(), false),
        ("regions = [\"us-east-1\"]", web1(), true),
        ("tags = [\"env=prod\"]", web1(), true),
        ("tags = [\"env=prod\"]", lab(), false),
        ("tags = [\"env=pro*\"]", web1(), true),
        ("tags = [\"env=*\"]", lab(), true),
        ("tags = [\"owner=*\"]", web1(), false),
        ("tags = [\"te*=web\"]", web1(), true),
        // Every tag pattern must match.
        ("tags = [\"env=prod\", \"team=web\"]", web1(), true),
        ("tags = [\"env=prod\", \"team=data\"]", web1(), false),
        // Every field that is set must match.
        ("ids = [\"i-*\"], tags = [\"env=prod\"]", web1(), true),
        ("ids = [\"i-*\"], tags = [\"env=dev\"]", web1(), false),
        ("names = [\"lab-*\"], regions = [\"us-*\"]", lab(), false),
        (
            "names = [\"lab-*\"], regions = [\"eu-*\"], tags = [\"team=lab\"]",
            lab(),
            true,
        ),
    ];
    for (selector, t, want) in table {
        let p = policy(&format!(
            "[[roles]]\nname = \"r\"\ntargets = [{{{selector}}}]\n"
        ));
        let u = user(&["r"]);
        assert_eq!(p.reaches(&u, t), *want, "{selector} vs {}", t.id);
        let decided = p.decide_start(&u, t, DEFAULT_DOCUMENT, &NO_PARAMETERS, REASON);
        assert_eq!(
            decided.is_ok(),
            *want,
            "{selector} vs {}: {decided:?}",
            t.id
        );
    }
}

#[test]
fn any_selector_of_a_role_will_do() {
    let p = policy(
        "[[roles]]\nname = \"r\"\n\
         [[roles.targets]]\nids = [\"i-0abc*\"]\n\
         [[roles.targets]]\ntags = [\"env=dev\"]\n",
    );
    let u = user(&["r"]);
    assert!(p.reaches(&u, &web1()));
    assert!(p.reaches(&u, &lab()));
    assert!(!p.reaches(&u, &target("i-9", "x", "us-east-1", &[("env", "prod")])));
}

#[test]
fn documents() {
    // (documents as TOML, document, allowed)
    let table: &[(&str, &str, bool)] = &[
        ("", "SSM-SessionManagerRunShell", true),
        ("", "AWS-StartInteractiveCommand", true),
        ("", "AWS-StartPortForwardingSession", false),
        ("documents = [\"*\"]", "Anything-Goes", true),
        (
            "documents = [\"AWS-Start*\"]",
            "AWS-StartPortForwardingSession",
            true,
        ),
        (
            "documents = [\"AWS-Start*\"]",
            "SSM-SessionManagerRunShell",
            false,
        ),
        (
            "documents = [\"Team-*\", \"SSM-*\"]",
            "SSM-SessionManagerRunShell",
            true,
        ),
        (
            "documents = [\"ssm-*\"]",
            "SSM-SessionManagerRunShell",
            false,
        ),
    ];
    for (documents, document, want) in table {
        let p = policy(&format!(
            "[[roles]]\nname = \"r\"\ntargets = [{{ids = [\"*\"]}}]\n{documents}\n"
        ));
        let decided = p.decide_start(&user(&["r"]), &web1(), document, &NO_PARAMETERS, REASON);
        assert_eq!(
            decided.is_ok(),
            *want,
            "{documents:?} vs {document}: {decided:?}"
        );
        if !want {
            let Err(Refusal::Denied(why)) = decided else {
                panic!("a document refusal is a denial: {decided:?}");
            };
            assert!(
                why.contains("but not with the document") && why.contains(document),
                "{why}"
            );
        }
    }
}

#[test]
fn reason_rules() {
    // (reason rules as TOML, reason, Ok(trimmed) or Err(needle of the message))
    let regex = "reason = {pattern = \"^(INC|CHG)-[0-9]+\", pattern_message = \"start with the ticket, e.g. INC-1234\"}";
    let table: &[(&str, &str, Result<&str, &str>)] = &[
        ("", REASON, Ok(REASON)),
        ("", "  INC-1234 disk full  ", Ok("INC-1234 disk full")),
        (
            "",
            "too short",
            Err("at least 10 characters (got 9 after trimming)"),
        ),
        (
            "",
            "          ",
            Err("at least 10 characters (got 0 after trimming)"),
        ),
        ("", "", Err("at least 10")),
        (
            "",
            &"x".repeat(501),
            Err("at most 500 characters (got 501)"),
        ),
        ("", &"é".repeat(500), Ok(&"é".repeat(500))),
        ("", "two\nlines here", Err("U+000A")),
        ("", "bell \u{7} ringing", Err("U+0007")),
        (regex, "INC-42 web down", Ok("INC-42 web down")),
        (regex, "CHG-7 deploy fix", Ok("CHG-7 deploy fix")),
        (regex, "  INC-42 web down", Ok("INC-42 web down")),
        (
            regex,
            "looking at web down",
            Err("start with the ticket, e.g. INC-1234"),
        ),
        (
            regex,
            "inc-42 web down",
            Err("start with the ticket, e.g. INC-1234"),
        ),
        (regex, "short", Err("at least 10")),
        (
            "reason = {pattern = \"INC-[0-9]+\"}",
            "web down, INC-9",
            Ok("web down, INC-9"),
        ),
        (
            "reason = {pattern = \"^INC-[0-9]+$\"}",
            "INC-9 web down",
            Err("the reason must match ^INC-[0-9]+$"),
        ),
        (
            "reason = {min_length = 3, max_length = 5}",
            "abcd",
            Ok("abcd"),
        ),
        (
            "reason = {min_length = 3, max_length = 5}",
            "abcdef",
            Err("at most 5"),
        ),
        ("reason = {required = false}", "", Ok("")),
        ("reason = {required = false}", "   ", Ok("")),
        ("reason = {required = false}", "short", Err("at least 10")),
        ("reason = {min_length = 0}", "", Err("a reason is required")),
        ("reason = {min_length = 0}", "x", Ok("x")),
    ];
    for (rules, reason, want) in table {
        let p = policy(&format!(
            "[[roles]]\nname = \"r\"\ntargets = [{{ids = [\"*\"]}}]\n{rules}\n"
        ));
        let decided = p.decide_start(
            &user(&["r"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            reason,
        );
        match (want, decided) {
            (Ok(trimmed), Ok(d)) => assert_eq!(d.reason, *trimmed, "{rules} / {reason:?}"),
            (Err(needle), Err(Refusal::InvalidReason(m))) => {
                assert!(m.contains(needle), "{rules} / {reason:?}: {m}")
            }
            (want, got) => panic!("{rules} / {reason:?}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_regex_message_is_exactly_the_configured_one() {
    let p = policy(
        "[[roles]]\nname = \"r\"\ntargets = [{ids = [\"*\"]}]\n\
         reason.pattern = \"^(INC|CHG)-[0-9]+\"\n\
         reason.pattern_message = \"Give the incident or change first, like INC-1234.\"\n",
    );
    let refused = p
        .decide_start(
            &user(&["r"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            "just looking around",
        )
        .unwrap_err();
    assert_eq!(
        refused,
        Refusal::InvalidReason("Give the incident or change first, like INC-1234.".into())
    );
}

#[test]
fn default_deny() {
    let p = policy(
        "[[roles]]\nname = \"web\"\ntargets = [{tags = [\"team=web\"]}]\n\
         [[roles]]\nname = \"reader\"\nread_audit = true\n",
    );
    let t = target(
        "i-0abc123",
        "db-1",
        "us-east-1",
        &[("Name", "db-1"), ("env", "prod")],
    );
    for roles in [
        &[][..],
        &["ghost"],
        &["reader"],
        &["web"],
        &["reader", "ghost", "web"],
    ] {
        let u = user(roles);
        assert!(!p.reaches(&u, &t), "{roles:?}");
        let refused = p
            .decide_start(&u, &t, DEFAULT_DOCUMENT, &NO_PARAMETERS, REASON)
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal::Denied("no role of yours allows i-0abc123 (db-1, us-east-1, env=prod)".into()),
            "{roles:?}"
        );
    }
    // No roles at all in a file: nobody opens anything.
    let empty = policy("");
    assert!(empty.roles().is_empty());
    assert!(
        empty
            .decide_start(
                &user(&["admin"]),
                &web1(),
                DEFAULT_DOCUMENT,
                &NO_PARAMETERS,
                REASON
            )
            .is_err()
    );
}

#[test]
fn several_roles_are_a_union() {
    let p = policy(
        "[[roles]]\nname = \"staging\"\ntargets = [{tags = [\"env=dev\"]}]\n\
         max_duration_seconds = 3600\nidle_timeout_seconds = 600\n\
         [[roles]]\nname = \"prod\"\ntargets = [{tags = [\"env=prod\"]}]\n\
         documents = [\"AWS-StartInteractiveCommand\"]\n\
         reason = {pattern = \"^INC-[0-9]+\", pattern_message = \"prod needs an incident\"}\n\
         max_duration_seconds = 900\n\
         [[roles]]\nname = \"prod-long\"\ntargets = [{tags = [\"env=prod\"]}]\n\
         documents = [\"AWS-StartInteractiveCommand\"]\n\
         reason = {pattern = \"^INC-[0-9]+\", pattern_message = \"prod needs an incident\"}\n\
         max_duration_seconds = 7200\nidle_timeout_seconds = 300\n\
         [[roles]]\nname = \"observer\"\nobserve_others = true\n",
    );
    let both = user(&["staging", "prod", "observer"]);
    assert!(p.reaches(&both, &web1()));
    assert!(p.reaches(&both, &lab()));
    // Each target under the role that selects it, with that role's documents and reasons.
    let d = p
        .decide_start(
            &both,
            &lab(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            "looking at logs",
        )
        .unwrap();
    assert_eq!(d.roles, ["staging"]);
    assert_eq!(d.max_duration, Some(Duration::from_secs(3600)));
    assert_eq!(d.idle_timeout, Some(Duration::from_secs(600)));
    assert!(matches!(
        p.decide_start(&both, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS, "INC-1 web down"),
        Err(Refusal::Denied(m)) if m.contains("not with the document SSM-SessionManagerRunShell")
    ));
    assert_eq!(
        p.decide_start(
            &both,
            &web1(),
            "AWS-StartInteractiveCommand",
            &NO_PARAMETERS,
            "looking at logs"
        ),
        Err(Refusal::InvalidReason("prod needs an incident".into()))
    );
    let d = p
        .decide_start(
            &both,
            &web1(),
            "AWS-StartInteractiveCommand",
            &NO_PARAMETERS,
            "INC-1 web down",
        )
        .unwrap();
    assert_eq!(d.roles, ["prod"]);
    // Two roles that allow: the most generous limits (an unset one is no limit).
    let more = user(&["prod", "prod-long"]);
    let d = p
        .decide_start(
            &more,
            &web1(),
            "AWS-StartInteractiveCommand",
            &NO_PARAMETERS,
            "INC-1 web down",
        )
        .unwrap();
    assert_eq!(d.roles, ["prod", "prod-long"]);
    assert_eq!(d.max_duration, Some(Duration::from_secs(7200)));
    assert_eq!(d.idle_timeout, None, "prod sets no idle timeout of its own");
    // Grants add up too.
    let g = p.grants(&both.roles);
    assert!(g.opens_sessions && g.observe_others && !g.terminate_others && !g.read_audit);
    assert!(g.sees_all_sessions());
    assert_eq!(
        p.grants(&user(&["staging"]).roles),
        Grants {
            opens_sessions: true,
            ..Grants::default()
        }
    );
}

#[test]
fn the_builtin_roles_keep_their_meaning() {
    let p = Policy::builtin();
    assert_eq!(p.source(), &Source::Builtin);
    for role in ["operator", "admin"] {
        let u = user(&[role]);
        assert!(p.reaches(&u, &web1()) && p.reaches(&u, &lab()), "{role}");
        for document in [
            DEFAULT_DOCUMENT,
            "AWS-StartInteractiveCommand",
            "Missing-Document",
        ] {
            let d = p
                .decide_start(&u, &lab(), document, &NO_PARAMETERS, REASON)
                .unwrap();
            assert_eq!(d.roles, [role]);
            assert_eq!((d.max_duration, d.idle_timeout), (None, None));
        }
        assert!(matches!(
            p.decide_start(&u, &lab(), DEFAULT_DOCUMENT, &NO_PARAMETERS, "short"),
            Err(Refusal::InvalidReason(m)) if m.contains("at least 10")
        ));
    }
    let auditor = user(&["auditor"]);
    assert!(!p.reaches(&auditor, &web1()));
    assert!(matches!(
        p.decide_start(&auditor, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS, REASON),
        Err(Refusal::Denied(m)) if m.starts_with("no role of yours allows i-0abc0001")
    ));

    let resolved = |roles: &[&str]| {
        let mut u = user(roles);
        u.grants = p.grants(&u.roles);
        u
    };
    let (admin, operator, auditor) = (
        resolved(&["admin"]),
        resolved(&["operator"]),
        resolved(&["auditor"]),
    );
    assert!(may_open_session(&operator, "").is_ok());
    assert!(may_open_session(&admin, "").is_ok());
    let err = may_open_session(&auditor, "").unwrap_err();
    assert!(err.contains("alice may not open sessions"), "{err}");
    assert!(sees_all_sessions(&auditor) && sees_all_sessions(&admin));
    assert!(!sees_all_sessions(&operator));
    assert!(may_terminate(&operator, 7) && !may_terminate(&operator, 8));
    assert!(may_terminate(&admin, 8) && !may_terminate(&auditor, 8));
    assert!(!may_attach(&admin, 8) && may_attach(&operator, 7));
    assert!(may_observe(&admin, 8) && !may_observe(&auditor, 8) && !may_observe(&operator, 8));
    assert!(may_read_audit(&admin) && may_read_audit(&auditor) && !may_read_audit(&operator));
    // A user read from the table but not resolved by the policy has no grants.
    assert!(!sees_all_sessions(&user(&["admin"])));
}

#[test]
fn refusals_describe_the_target() {
    assert_eq!(
        describe_target(&web1()),
        "i-0abc0001 (web-1, us-east-1, env=prod, team=web)"
    );
    assert_eq!(describe_target(&Target::unknown("i-0")), "i-0");
}

#[test]
fn the_explanation_goes_rule_by_rule() {
    let p = policy(
        "[[roles]]\nname = \"web\"\ndescription = \"web on-call\"\n\
         [[roles.targets]]\nids = [\"i-0fff*\"]\n\
         [[roles.targets]]\ntags = [\"env=staging\", \"team=web\"]\n\
         [[roles]]\nname = \"prod\"\ntargets = [{names = [\"web-*\"], regions = [\"us-*\"]}]\n\
         reason = {pattern = \"^INC-\", pattern_message = \"prod needs an incident\"}\n\
         max_duration_seconds = 900\nterminate_others = true\n",
    );
    let u = user(&["web", "ghost", "prod"]);
    let text = p
        .explain(
            &u,
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            Some("looking around"),
        )
        .render();
    for needle in [
        "user      alice (roles: web, ghost, prod)",
        "target    i-0abc0001 (web-1, us-east-1, env=prod, team=web)",
        "role web (web on-call)",
        "targets[0] ids i-0fff*: no, the id i-0abc0001 does not match i-0fff*",
        "targets[1] tags env=staging, team=web: no, no tag matches env=staging (it has env=prod)",
        "-> does not select this target",
        "role ghost: not defined in this policy",
        "targets[0] names web-*; regions us-*: matches",
        "document: allowed by SSM-SessionManagerRunShell",
        "reason: required, 10 to 500 characters, matching ^INC-: fails: prod needs an incident",
        "limits: sessions of at most 900 s",
        "also may: terminate others' sessions",
        "DENIED (invalid reason): prod needs an incident",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let text = p
        .explain(
            &u,
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            Some("INC-1 down"),
        )
        .render();
    assert!(
        text.ends_with(
            "ALLOWED by prod (sessions of at most 900 s)\n\
             CLIPBOARD copy and paste allowed\n\
             FILES     no file transfer (no allowing role has file_transfer)\n\
             AWS role  none: the gateway's own credentials\n"
        ),
        "{text}"
    );
    let text = p
        .explain(&u, &lab(), DEFAULT_DOCUMENT, &NO_PARAMETERS, None)
        .render();
    assert!(text.contains("reason    (not given"), "{text}");
    assert!(
        text.ends_with(
            "DENIED: no role of yours allows mi-0def0003 (lab-pi, eu-west-1, env=dev, team=lab)\n"
        ),
        "{text}"
    );
}

#[test]
fn inline_roles_and_files_and_their_errors() {
    let config = PolicyConfig {
        roles: Some(vec![spec::RoleSpec {
            targets: vec![spec::SelectorSpec {
                ids: vec!["*".into()],
                ..Default::default()
            }],
            ..spec::builtin_roles().remove(2)
        }]),
        ..PolicyConfig::default()
    };
    let p = Policy::from_config(&config, None).unwrap();
    assert_eq!(p.source(), &Source::Inline);
    assert_eq!(p.role_names(), ["auditor"]);
    assert!(p.reaches(&user(&["auditor"]), &web1()));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("roles.toml"), "[[roles]]\nname = \"ops\"\n").unwrap();
    let config = PolicyConfig {
        file: Some("roles.toml".into()),
        ..PolicyConfig::default()
    };
    let p = Policy::from_config(&config, Some(&dir.path().join("porthole.toml"))).unwrap();
    assert_eq!(p.source(), &Source::File(dir.path().join("roles.toml")));
    assert_eq!(p.hash(), sha256_hex(b"[[roles]]\nname = \"ops\"\n"));

    let missing = Policy::from_config(&config, None).unwrap_err();
    assert!(
        missing.starts_with("policy.file: cannot read roles.toml"),
        "{missing}"
    );
    std::fs::write(
        dir.path().join("roles.toml"),
        "[[roles]]\nname = \"ops\"\nreason.pattern = \"(\"\n",
    )
    .unwrap();
    let bad = Policy::from_config(&config, Some(&dir.path().join("porthole.toml"))).unwrap_err();
    assert!(
        bad.contains("roles.toml: roles[0].reason.pattern: invalid regex"),
        "{bad}"
    );
    let both = PolicyConfig {
        roles: Some(spec::builtin_roles()),
        ..config
    };
    assert!(
        Policy::from_config(&both, None)
            .unwrap_err()
            .contains("both set")
    );
}

/// `roles = []` (or an empty policy file) is a policy that allows nothing; only a `[policy]`
/// with no roles at all keeps the built-in roles.
#[test]
fn an_empty_roles_list_denies_everyone() {
    // The body of a `[policy]` section.
    let config = |text: &str| -> PolicyConfig { toml::from_str(text).unwrap() };
    let admin = user(&["admin"]);
    let inline_empty = Policy::from_config(&config("roles = []\n"), None).unwrap();
    assert_eq!(inline_empty.source(), &Source::Inline);
    assert!(inline_empty.roles().is_empty());
    assert!(!inline_empty.reaches(&admin, &web1()));
    assert_eq!(inline_empty.grants(&admin.roles), Grants::default());
    assert!(
        inline_empty
            .decide_start(
                &admin,
                &web1(),
                DEFAULT_DOCUMENT,
                &NO_PARAMETERS,
                "checking the disk usage"
            )
            .is_err()
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let file_empty = Policy::from_file_bytes(&dir.path().join("empty.toml"), b"").unwrap();
    assert!(file_empty.roles().is_empty());
    assert!(!file_empty.reaches(&admin, &web1()));

    for text in ["", "watch_seconds = 5\n"] {
        let builtin = Policy::from_config(&config(text), None).unwrap();
        assert_eq!(builtin.source(), &Source::Builtin, "{text:?}");
        assert!(builtin.reaches(&admin, &web1()), "{text:?}");
    }
}

fn params(pairs: &[(&str, &[&str])]) -> Parameters {
    pairs
        .iter()
        .map(|(k, vs)| {
            (
                (*k).to_owned(),
                vs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect()
}

#[test]
fn a_role_restricts_document_parameters() {
    let p = policy(
        "[[roles]]\nname = \"runner\"\ntargets = [{ids = [\"*\"]}]\n\
         documents = [\"AWS-StartInteractiveCommand\", \"AWS-StartPortForwardingSession\"]\n\
         parameters = {command = [\"df *\", \"uptime\"], portNumber = [\"443\"]}\n\
         [[roles]]\nname = \"free\"\ntargets = [{names = [\"lab-*\"]}]\n\
         documents = [\"AWS-StartInteractiveCommand\"]\n\
         [[roles]]\nname = \"closed\"\ntargets = [{names = [\"lab-*\"]}]\n\
         documents = [\"AWS-StartPortForwardingSession\"]\nparameters = {}\n",
    );
    let doc = "AWS-StartInteractiveCommand";
    let runner = user(&["runner"]);
    let decide =
        |u: &User, t: &Target, d: &str, ps: &Parameters| p.decide_start(u, t, d, ps, REASON);
    // Listed names, matching values: allowed; no parameters at all: allowed.
    for ok in [
        params(&[("command", &["df -h"])]),
        params(&[("command", &["uptime", "df /"])]),
        NO_PARAMETERS,
    ] {
        assert!(decide(&runner, &web1(), doc, &ok).is_ok(), "{ok:?}");
    }
    // A value no glob matches; a name not listed: refused with the words.
    let refused = |ps: Parameters| match decide(&runner, &web1(), doc, &ps) {
        Err(Refusal::Denied(m)) => m,
        other => panic!("{ps:?}: {other:?}"),
    };
    let m = refused(params(&[("command", &["uptime", "rm -rf /"])]));
    assert_eq!(
        m,
        "your roles allow i-0abc0001 (web-1, us-east-1, env=prod, team=web) with the document \
         AWS-StartInteractiveCommand but not with these parameters: the parameter command = \
         \"rm -rf /\" does not match df *, uptime"
    );
    let m = refused(params(&[("host", &["10.0.0.1"])]));
    assert!(
        m.ends_with(
            "the parameter host is not allowed (allowed: command: df *, uptime; portNumber: 443)"
        ),
        "{m}"
    );
    // A role without `parameters` allows any; `parameters = {}` allows none. Of two roles,
    // one that allows is enough.
    let both = user(&["runner", "free"]);
    let wild = params(&[("command", &["anything at all"])]);
    assert!(decide(&both, &lab(), doc, &wild).is_ok());
    assert!(decide(&runner, &lab(), doc, &wild).is_err());
    let closed = user(&["closed"]);
    let forward = "AWS-StartPortForwardingSession";
    assert!(decide(&closed, &lab(), forward, &NO_PARAMETERS).is_ok());
    let m = match decide(
        &closed,
        &lab(),
        forward,
        &params(&[("portNumber", &["22"])]),
    ) {
        Err(Refusal::Denied(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(
        m.ends_with("the parameter portNumber is not allowed (allowed: none)"),
        "{m}"
    );
    // The explanation says it role by role.
    let text = p
        .explain(
            &runner,
            &web1(),
            doc,
            &params(&[("command", &["rm -rf /"])]),
            None,
        )
        .render();
    for needle in [
        "params    command=[\"rm -rf /\"]",
        "parameters: command: df *, uptime; portNumber: 443: no, the parameter command",
        "-> does not allow these parameters",
        "DENIED: your roles allow",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn parameter_rules_and_shapes_are_checked() {
    let bad = |text: &str| {
        Policy::from_file_bytes(Path::new("policy.toml"), text.as_bytes()).unwrap_err()
    };
    let role = "[[roles]]\nname = \"r\"\ntargets = [{ids = [\"*\"]}]\n";
    let e = bad(&format!("{role}parameters = {{\"bad name\" = [\"x\"]}}\n"));
    assert!(
        e.contains("roles[0].parameters: \"bad name\" is not a parameter name"),
        "{e}"
    );
    let e = bad(&format!("{role}parameters = {{command = []}}\n"));
    assert!(
        e.contains("roles[0].parameters.command: name at least one pattern"),
        "{e}"
    );
    let e = bad(&format!("{role}parameters = {{command = [\"[\"]}}\n"));
    assert!(
        e.contains("roles[0].parameters.command[0]: invalid glob"),
        "{e}"
    );

    assert!(check_parameters(&params(&[("command", &["ls"])])).is_ok());
    assert!(check_parameters(&NO_PARAMETERS).is_ok());
    let many: Parameters = (0..21)
        .map(|i| (format!("p{i}"), vec!["x".to_owned()]))
        .collect();
    assert_eq!(
        check_parameters(&many).unwrap_err(),
        "parameters: at most 20 names (got 21)"
    );
    let values = vec!["x"; 17];
    assert!(
        check_parameters(&params(&[("command", &values)]))
            .unwrap_err()
            .contains("1 to 16 values (got 17)")
    );
    assert!(check_parameters(&params(&[("", &["x"])])).is_err());
    assert!(check_parameters(&params(&[(&"n".repeat(65), &["x"])])).is_err());
    assert!(check_parameters(&params(&[("command", &[&"é".repeat(4096)])])).is_ok());
    assert!(check_parameters(&params(&[("command", &[&"é".repeat(4097)])])).is_err());
}

#[test]
fn the_aws_role_is_the_first_allowing_role_in_policy_order_that_names_one() {
    let p = policy(
        r#"
[[roles]]
name = "readonly"
targets = [{ tags = ["env=dev"] }]
aws_role_arn = "arn:aws:iam::111122223333:role/Dev"

[[roles]]
name = "plain"
targets = [{ ids = ["*"] }]

[[roles]]
name = "prod"
targets = [{ tags = ["env=prod"] }]
aws_role_arn = "arn:aws:iam::444455556666:role/team/Prod"
aws_external_id = "porthole"

[[roles]]
name = "fallback"
targets = [{ ids = ["*"] }]
aws_role_arn = "arn:aws:iam::444455556666:role/Fallback"
"#,
    );
    // The person lists prod last; the policy's order decides, and a role without one
    // ("plain") is skipped.
    let alice = user(&["fallback", "plain", "prod", "readonly"]);
    let d2 = p
        .decide_start(
            &alice,
            &web1(),
            DEFAULT_DOCUMENTS[0],
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap();
    let role = d2.aws_role.unwrap();
    assert_eq!(role.arn, "arn:aws:iam::444455556666:role/team/Prod");
    assert_eq!(role.external_id.as_deref(), Some("porthole"));
    assert_eq!(d2.aws_role_from.as_deref(), Some("prod"));
    // On a dev node: readonly comes first.
    let d = p
        .decide_start(&alice, &lab(), DEFAULT_DOCUMENTS[0], &NO_PARAMETERS, REASON)
        .unwrap();
    assert_eq!(
        d.aws_role.unwrap().arn,
        "arn:aws:iam::111122223333:role/Dev"
    );
    // Only "plain": the gateway's own credentials.
    let d = p
        .decide_start(
            &user(&["plain"]),
            &web1(),
            DEFAULT_DOCUMENTS[0],
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap();
    assert!(d.aws_role.is_none());
    // `policy check` says which.
    let text = p
        .explain(
            &alice,
            &web1(),
            DEFAULT_DOCUMENTS[0],
            &NO_PARAMETERS,
            Some(REASON),
        )
        .render();
    assert!(
        text.contains("AWS role  arn:aws:iam::444455556666:role/team/Prod (from role prod"),
        "{text}"
    );
}

#[test]
fn aws_role_settings_that_cannot_work_are_refused() {
    for (role, says) in [
        ("aws_role_arn = \"Prod\"", "is not an IAM role ARN"),
        (
            "aws_role_arn = \"arn:aws:iam::12345:role/Prod\"",
            "is not an IAM role ARN",
        ),
        (
            "aws_role_arn = \"arn:aws:iam::111122223333:user/Prod\"",
            "is not an IAM role ARN",
        ),
        (
            "aws_external_id = \"x-y\"",
            "there is no aws_role_arn for it to go with",
        ),
    ] {
        let text = format!("[[roles]]\nname = \"r\"\ntargets = [{{ ids = [\"*\"] }}]\n{role}\n");
        let e = Policy::from_file_bytes(Path::new("policy.toml"), text.as_bytes()).unwrap_err();
        assert!(e.contains(says), "{role}: {e}");
        assert!(e.contains("roles[0].aws_"), "{role}: {e}");
    }
}

#[test]
fn accounts_selectors_match_the_targets_account_and_say_why_not() {
    let p = policy(
        r#"
[[roles]]
name = "prod-oncall"
targets = [{ accounts = ["prod-*"] }]
"#,
    );
    let oncall = user(&["prod-oncall"]);
    let in_account = |account: &str| Target {
        account: account.into(),
        ..web1()
    };
    assert!(p.reaches(&oncall, &in_account("prod-eu")));
    assert!(!p.reaches(&oncall, &in_account("staging")));
    assert!(!p.reaches(&oncall, &in_account("")));
    let text = p
        .explain(
            &oncall,
            &in_account("staging"),
            DEFAULT_DOCUMENTS[0],
            &NO_PARAMETERS,
            Some(REASON),
        )
        .render();
    assert!(text.contains("accounts prod-*"), "{text}");
    assert!(
        text.contains("the account staging does not match prod-*"),
        "{text}"
    );
    let e = Policy::from_file_bytes(
        Path::new("policy.toml"),
        b"[[roles]]\nname = \"r\"\ntargets = [{ accounts = [\"[\"] }]\n",
    )
    .unwrap_err();
    assert!(e.contains("roles[0].targets[0].accounts[0]"), "{e}");
}

#[test]
fn an_accounts_own_aws_role_wins_over_the_roles_default() {
    let p = policy(
        r#"
[[roles]]
name = "split"
targets = [{ ids = ["*"] }]
aws_role_arns = { prod = "arn:aws:iam::111111111111:role/ProdOps", staging = "arn:aws:iam::222222222222:role/StagingOps" }

[[roles]]
name = "only-prod"
targets = [{ ids = ["*"] }]
aws_role_arns = { prod = "arn:aws:iam::111111111111:role/Other" }

[[roles]]
name = "everywhere"
targets = [{ ids = ["*"] }]
aws_role_arn = "arn:aws:iam::333333333333:role/Default"
aws_role_arns = { staging = "arn:aws:iam::222222222222:role/Staging" }
"#,
    );
    let arn = |roles: &[&str], account: &str| {
        p.decide_start(
            &user(roles),
            &Target {
                account: account.into(),
                ..web1()
            },
            DEFAULT_DOCUMENTS[0],
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap()
        .aws_role
        .map(|r| r.arn)
    };
    assert_eq!(
        arn(&["split"], "prod").as_deref(),
        Some("arn:aws:iam::111111111111:role/ProdOps")
    );
    assert_eq!(
        arn(&["split"], "staging").as_deref(),
        Some("arn:aws:iam::222222222222:role/StagingOps")
    );
    // No role for the account and no default: the gateway's (the account's) own.
    assert_eq!(arn(&["split"], "dev"), None);
    assert_eq!(
        arn(&["everywhere"], "staging").as_deref(),
        Some("arn:aws:iam::222222222222:role/Staging")
    );
    assert_eq!(
        arn(&["everywhere"], "prod").as_deref(),
        Some("arn:aws:iam::333333333333:role/Default")
    );
    // In policy order: "only-prod" names none for staging, so "everywhere" decides.
    assert_eq!(
        arn(&["only-prod", "everywhere"], "staging").as_deref(),
        Some("arn:aws:iam::222222222222:role/Staging")
    );
    let e = Policy::from_file_bytes(
        Path::new("policy.toml"),
        b"[[roles]]\nname = \"r\"\ntargets = [{ ids = [\"*\"] }]\naws_role_arns = { prod = \"nope\" }\n",
    )
    .unwrap_err();
    assert!(e.contains("roles[0].aws_role_arns.prod"), "{e}");
}

const APPROVALS: &str = r#"
[[roles]]
name = "prod"
targets = [{ tags = ["env=prod"] }]
[roles.approval]
approvers = ["leads"]
grant_seconds = 600

[[roles]]
name = "prod-dual"
targets = [{ names = ["web-*"] }]
[roles.approval]
approvers = ["leads", "sre"]
min_approvals = 2
grant_seconds = 1800
break_glass = true

[[roles]]
name = "web"
targets = [{ tags = ["team=web"] }]

[[roles]]
name = "off"
targets = [{ ids = ["*"] }]
approval = { required = false, approvers = ["leads"] }

[[roles]]
name = "leads"

[[roles]]
name = "sre"
"#;

#[test]
fn approval_is_needed_only_when_every_allowing_role_requires_it() {
    let p = policy(APPROVALS);
    let need = |roles: &[&str]| {
        p.decide_start(
            &user(roles),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap()
        .approval
    };
    let one = need(&["prod"]).unwrap();
    assert_eq!(one.approvers, ["leads"]);
    assert_eq!(one.min_approvals, 1);
    assert_eq!(one.grant, Duration::from_secs(600));
    assert!(!one.break_glass);
    assert_eq!(one.describe(), "1 approval by leads, grants up to 600 s");
    // Two requiring roles: every approver, the fewest approvals, the longest grant, and
    // break-glass when one allows it.
    let both = need(&["prod", "prod-dual"]).unwrap();
    assert_eq!(both.roles, ["prod", "prod-dual"]);
    assert_eq!(both.approvers, ["leads", "sre"]);
    assert_eq!(both.min_approvals, 1);
    assert_eq!(both.grant, Duration::from_secs(1800));
    assert!(both.break_glass);
    // A role that needs none is enough; `required = false` needs none.
    assert_eq!(need(&["prod", "web"]), None);
    assert_eq!(need(&["off"]), None);
    // Who approves: holders of a role some approval names.
    assert!(p.is_approver(&user(&["sre"])));
    assert!(!p.is_approver(&user(&["prod", "web"])));
    // The explanation says so.
    let text = p
        .explain(
            &user(&["prod-dual"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            Some(REASON),
        )
        .render();
    assert!(
        text.contains(
            "approval: 2 approvals by leads or sre, grants up to 1800 s, break-glass allowed"
        ),
        "{text}"
    );
    assert!(
        text.contains("APPROVAL  needed first (roles prod-dual)"),
        "{text}"
    );
}

#[test]
fn clipboard_is_on_unless_every_allowing_role_turns_it_off() {
    let p = policy(
        "[[roles]]\nname = \"regulated\"\ntargets = [{tags = [\"env=prod\"]}]\nclipboard = false\n\
         [[roles]]\nname = \"web\"\ntargets = [{tags = [\"team=web\"]}]\n\
         [[roles]]\nname = \"lab\"\ntargets = [{tags = [\"team=lab\"]}]\nclipboard = true\n\
         [[roles]]\nname = \"quiet\"\ntargets = [{tags = [\"team=lab\"]}]\nclipboard = false\n",
    );
    let decide = |roles: &[&str], target: &Target| {
        p.decide_start(
            &user(roles),
            target,
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap()
    };
    // Left out: allowed (the default); written false: off.
    assert!(decide(&["web"], &web1()).clipboard);
    assert!(!decide(&["regulated"], &web1()).clipboard);
    // Several roles allow the session: the most permissive decides.
    let d = decide(&["regulated", "web"], &web1());
    assert_eq!(d.roles, ["regulated", "web"]);
    assert!(d.clipboard);
    assert!(decide(&["quiet", "lab"], &lab()).clipboard);
    assert!(!decide(&["quiet"], &lab()).clipboard);
    // A role that does not allow the session has no say.
    assert!(!decide(&["regulated", "lab"], &web1()).clipboard);
    // `porthole policy check` says it, per role and for the decision.
    let text = p
        .explain(
            &user(&["regulated"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            None,
        )
        .render();
    assert!(
        text.contains("  clipboard: off (copy and paste turned off)"),
        "{text}"
    );
    assert!(text.contains("CLIPBOARD copy and paste off"), "{text}");
    let text = p
        .explain(
            &user(&["web"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            None,
        )
        .render();
    assert!(text.contains("CLIPBOARD copy and paste allowed"), "{text}");
    assert!(!text.contains("clipboard: off"), "{text}");
    // The built-in roles allow it, and their hash did not change with the new key.
    let builtin = Policy::builtin();
    assert!(builtin.roles().iter().all(|r| r.clipboard));
    assert!(
        !serde_json::to_string(&spec::builtin_roles())
            .unwrap()
            .contains("clipboard")
    );
}

#[test]
fn join_others_lets_owners_invite_and_the_invitees_roles_must_allow_the_target() {
    let p = policy(
        "[[roles]]\nname = \"web\"\ntargets = [{tags = [\"team=web\"]}]\njoin_others = true\n\
         [[roles]]\nname = \"lab\"\ntargets = [{tags = [\"team=lab\"]}]\n\
         [[roles]]\nname = \"scripts\"\ntargets = [{tags = [\"team=web\"]}]\n\
         documents = [\"AWS-StartInteractiveCommand\"]\n",
    );
    let resolved = |id: i64, name: &str, roles: &[&str]| {
        let mut u = user(roles);
        u.id = id;
        u.name = name.into();
        u.grants = p.grants(&u.roles);
        u
    };
    let alice = resolved(7, "alice", &["web"]);
    let bob = resolved(8, "bob", &["lab"]);
    let carol = resolved(9, "carol", &["web", "lab"]);
    let dave = resolved(10, "dave", &["scripts"]);
    // The grant adds up like the others and is not one that shows everyone's sessions.
    assert!(alice.grants.join_others && !bob.grants.join_others);
    assert!(!alice.grants.sees_all_sessions());
    // Only the owner, and only with join_others.
    assert_eq!(may_invite(&alice, "alice", 7), Ok(()));
    let e = may_invite(&carol, "alice", 7).unwrap_err();
    assert!(e.contains("only alice may invite"), "{e}");
    let e = may_invite(&bob, "bob", 8).unwrap_err();
    assert!(e.contains("no role of theirs has join_others"), "{e}");
    // Not oneself, not a disabled user.
    let e = check_invitee(&alice, &alice).unwrap_err();
    assert!(e.contains("alice is you"), "{e}");
    let mut gone = carol.clone();
    gone.disabled = true;
    assert!(
        check_invitee(&alice, &gone)
            .unwrap_err()
            .contains("disabled")
    );
    assert_eq!(check_invitee(&alice, &carol), Ok(()));
    // The invitee's own roles decide, as for a start of theirs (without the reason).
    let d = p
        .may_join(&carol, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS)
        .unwrap();
    assert_eq!(d.roles, ["web"]);
    let e = p
        .may_join(&bob, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS)
        .unwrap_err();
    assert!(
        e.starts_with(
            "bob may not join a session on this node: no role of theirs allows i-0abc0001"
        ),
        "{e}"
    );
    let e = p
        .may_join(&dave, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS)
        .unwrap_err();
    assert!(
        e.contains("their roles allow i-0abc0001") && e.contains("not with the document"),
        "{e}"
    );
    assert!(
        p.may_join(
            &dave,
            &web1(),
            "AWS-StartInteractiveCommand",
            &NO_PARAMETERS
        )
        .is_ok()
    );
    // Modes.
    assert_eq!(JoinMode::parse("write"), Ok(JoinMode::Write));
    assert_eq!(JoinMode::parse("read").map(JoinMode::as_str), Ok("read"));
    assert!(JoinMode::parse("admin").unwrap_err().contains("\"admin\""));
    // The explanation lists the grant.
    let text = p
        .explain(&alice, &web1(), DEFAULT_DOCUMENT, &NO_PARAMETERS, None)
        .render();
    assert!(
        text.contains("also may: invite others into their own sessions (join_others)"),
        "{text}"
    );
    // The built-in admin and operator may share their sessions; the auditor opens none.
    let b = Policy::builtin();
    for (role, joins) in [("admin", true), ("operator", true), ("auditor", false)] {
        assert_eq!(b.grants(&user(&[role]).roles).join_others, joins, "{role}");
    }
}

#[test]
fn file_transfer_is_what_any_allowing_role_allows() {
    let p = policy(
        "[[roles]]\nname = \"plain\"\ntargets = [{tags = [\"team=web\"]}]\n\
         [[roles]]\nname = \"readers\"\ntargets = [{tags = [\"team=web\"]}]\nfile_transfer = \"download\"\n\
         [[roles]]\nname = \"writers\"\ntargets = [{tags = [\"team=web\"]}]\nfile_transfer = \"upload\"\n\
         [[roles]]\nname = \"lab\"\ntargets = [{tags = [\"team=lab\"]}]\nfile_transfer = \"both\"\n",
    );
    let decide = |roles: &[&str], target: &Target| {
        p.decide_start(
            &user(roles),
            target,
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            REASON,
        )
        .unwrap()
        .file_transfer
    };
    // Left out: none.
    assert_eq!(decide(&["plain"], &web1()), FileTransfer::None);
    assert_eq!(decide(&["readers"], &web1()), FileTransfer::Download);
    assert_eq!(
        decide(&["plain", "readers"], &web1()),
        FileTransfer::Download
    );
    // Download from one role, upload from another: both.
    assert_eq!(decide(&["readers", "writers"], &web1()), FileTransfer::Both);
    // A role that does not allow the session has no say.
    assert_eq!(decide(&["plain", "lab"], &web1()), FileTransfer::None);
    assert_eq!(decide(&["lab"], &lab()), FileTransfer::Both);
    // The built-in admin and operator move files both ways.
    let builtin = Policy::builtin();
    for role in builtin.roles() {
        let want = match role.name.as_str() {
            "admin" | "operator" => FileTransfer::Both,
            _ => FileTransfer::None,
        };
        assert_eq!(role.file_transfer, want, "{}", role.name);
    }
    // `porthole policy check` says it.
    let text = p
        .explain(
            &user(&["readers", "writers"]),
            &web1(),
            DEFAULT_DOCUMENT,
            &NO_PARAMETERS,
            None,
        )
        .render();
    assert!(text.contains("  file_transfer: download"), "{text}");
    assert!(text.contains("FILES     upload and download"), "{text}");
}

#[test]
fn a_bad_file_transfer_value_is_refused_naming_the_key() {
    for value in ["\"yes\"", "\"Both\"", "\"\""] {
        let text = format!(
            "[[roles]]\nname = \"r\"\ntargets = [{{ ids = [\"*\"] }}]\nfile_transfer = {value}\n"
        );
        let e = Policy::from_file_bytes(Path::new("policy.toml"), text.as_bytes()).unwrap_err();
        assert!(
            e.contains("roles[0].file_transfer: one of none, download, upload, both"),
            "{value}: {e}"
        );
    }
    let text = "[[roles]]\nname = \"r\"\ntargets = [{ ids = [\"*\"] }]\nfile_transfer = true\n";
    let e = Policy::from_file_bytes(Path::new("policy.toml"), text.as_bytes()).unwrap_err();
    assert!(e.contains("file_transfer"), "{e}");
}
