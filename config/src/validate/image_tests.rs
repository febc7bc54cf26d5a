//! `image = "…"` services and `[[registry]]`: digest references only, overrides recorded, registry settings and
//! volume binds resolved into the service, the token never shown.

use crate::model::{Program, Registry};
use crate::parse;

const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn errors(body: &str) -> Vec<String> {
    match parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_image_service_keeps_its_reference_registry_overrides_and_binds() {
    let body = format!(
        "[[storage.volume]]\nname = \"data\"\ndevice = \"/dev/vdb\"\nfs = \"ext4\"\nmount = \"/srv/data\"\n\
         [[registry]]\nhost = \"10.0.2.2:5000\"\nhttp = true\ntoken = \"s3cr3t-token\"\n\
         [[service]]\nname = \"web\"\nimage = \"10.0.2.2:5000/keel/web@{DIGEST}\"\nargs = [\"serve\"]\nuid = 0\n\
         after = [\"volume:data\", \"network\"]\n\
         [[service]]\nname = \"other\"\nimage = \"registry.example/ns/app@{DIGEST}\"\nexec = \"/bin/app\"\n"
    );
    let c = parse("node.toml", &format!("version = 1\ngeneration = 1\n{body}")).unwrap();
    let Program::Image(web) = &c.services[0].program else { panic!("not an image: {:?}", c.services[0].program) };
    assert_eq!(web.reference, format!("10.0.2.2:5000/keel/web@{DIGEST}"));
    assert_eq!(
        web.registry,
        Registry { host: "10.0.2.2:5000".into(), http: true, token: Some("s3cr3t-token".into()), ca: None }
    );
    assert_eq!((web.exec.as_deref(), web.args_given, web.uid_given, web.gid_given), (None, true, true, false));
    assert!(!web.workdir_given);
    assert_eq!(web.binds, ["/srv/data"]);
    let Program::Image(other) = &c.services[1].program else { panic!("not an image") };
    assert_eq!(other.exec.as_deref(), Some("/bin/app"));
    assert_eq!(other.registry, Registry { host: "registry.example".into(), ..Registry::default() }, "HTTPS default");
    assert!(!other.args_given && other.binds.is_empty());
    // The token is in the model for the pull, never in what is printed.
    let shown = format!("{:?}", c);
    assert!(!shown.contains("s3cr3t-token") && shown.contains("<secret>"), "{shown}");
}

#[test]
fn a_tag_is_refused_with_the_digest_form() {
    let e = errors("[[service]]\nname = \"web\"\nimage = \"registry.example/ns/app:1.2\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("node.toml:5:9: service[0].image: a tag is not accepted"), "{e:?}");
    assert!(e[0].contains("@sha256:"), "the reason names the digest form: {e:?}");
    let both = errors(&format!(
        "[[service]]\nname = \"web\"\nimage = \"r.example/a@{DIGEST}\"\nartifact = {{ url = \"http://h/b\", sha256 = \"{}\" }}\n",
        "0".repeat(64)
    ));
    assert_eq!(both.len(), 1, "{both:?}");
    assert!(both[0].contains("exactly one of `exec`, `artifact` or `image`"), "{both:?}");
    let relative =
        errors(&format!("[[service]]\nname = \"web\"\nimage = \"r.example/a@{DIGEST}\"\nexec = \"bin/x\"\n"));
    assert_eq!(relative, ["node.toml:6:8: service[0].exec: must be an absolute path inside the image"]);
}

#[test]
fn registry_errors_name_their_place_and_never_quote_the_token() {
    let e = errors(
        "[[registry]]\nhost = \"r.example\"\ntoken = \"bad token\"\nca = \"not pem\"\n\
         [[registry]]\nhost = \"r.example\"\n[[registry]]\nhost = \"r.example:99999\"\n",
    );
    assert_eq!(
        e,
        [
            "node.toml:5:9: registry[0].token: must be one word without spaces or control characters",
            "node.toml:6:6: registry[0].ca: must hold PEM certificates (-----BEGIN CERTIFICATE-----)",
            "node.toml:8:8: registry[1].host: host \"r.example\" is already used by registry[0].host",
            "node.toml:10:8: registry[2].host: \"r.example:99999\" has a bad port; give host or host:port, e.g. \"registry.example:5000\"",
        ]
    );
    assert!(!e.iter().any(|l| l.contains("bad token")));
}

#[test]
fn capabilities_that_climb_out_of_the_image_root_are_refused_for_image_services_only() {
    let caps =
        "capabilities = [\"CAP_NET_BIND_SERVICE\", \"CAP_SYS_CHROOT\", \"CAP_SYS_ADMIN\", \"CAP_DAC_READ_SEARCH\"]\n";
    let e = errors(&format!("[[service]]\nname = \"web\"\nimage = \"r.example/a@{DIGEST}\"\n{caps}"));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with(
            "node.toml:6:41: service[0].capabilities[1]: CAP_SYS_CHROOT is refused for an `image` service: chroot"
        ),
        "{e:?}"
    );
    assert!(
        e[1].contains("capabilities[2]: CAP_SYS_ADMIN is refused for an `image` service: mount, pivot_root"),
        "{e:?}"
    );
    assert!(
        e[2].contains("capabilities[3]: CAP_DAC_READ_SEARCH is refused for an `image` service: open_by_handle_at"),
        "{e:?}"
    );
    // A plain service runs in the host's root already: the same capabilities stay its operator's choice.
    assert_eq!(errors(&format!("[[service]]\nname = \"web\"\nexec = \"/bin/x\"\n{caps}")), Vec::<String>::new());
}
