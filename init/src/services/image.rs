//! What an image service runs: its image config with the config's overrides applied (the rule is in
//! [`keel_config::model::Image`]). Pure; the pull is [`crate::oci`], the run [`super::namespaced`].

use keel_config::model::{Image, Service, DEFAULT_SERVICE_ID, INIT_REAL_UID};
use keel_oci::ImageConfig;
use std::collections::BTreeMap;

/// PATH when the image sets none (the one container runtimes use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process an image service starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    /// Where to look for `argv[0]` inside the image, in order: itself if it has a '/', else each PATH entry.
    pub candidates: Vec<String>,
}

/// Applies the service's overrides to the image config.
pub fn resolve(def: &Service, image: &Image, config: &ImageConfig) -> Result<Resolved, String> {
    let entry = match &image.exec {
        Some(exec) => vec![exec.clone()],
        None => config.entrypoint.clone(),
    };
    // As with any runtime: a replaced entrypoint drops the image's cmd, so the image's arguments never reach a
    // program they were not written for.
    let cmd = if image.args_given || image.exec.is_some() { def.args.clone() } else { config.cmd.clone() };
    let argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    if argv.first().is_none_or(|a| a.is_empty()) {
        return Err("the image has no entrypoint or cmd: give `exec` in the config".into());
    }
    let mut env = BTreeMap::new();
    for e in &config.env {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    env.extend(def.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.entry("PATH".to_string()).or_insert_with(|| DEFAULT_PATH.to_string());
    let workdir = if image.workdir_given {
        def.workdir.clone()
    } else {
        config.working_dir.clone().filter(|w| w.starts_with('/')).unwrap_or_else(|| "/".into())
    };
    let (image_uid, image_gid) = user(config.user.as_deref())?;
    let uid = if image.uid_given { def.uid } else { image_uid.unwrap_or(DEFAULT_SERVICE_ID) };
    let gid = if image.gid_given { def.gid } else { image_gid.unwrap_or(DEFAULT_SERVICE_ID) };
    if uid == INIT_REAL_UID || gid == INIT_REAL_UID {
        return Err(format!("the image's user {INIT_REAL_UID} is kept for PID 1; give uid/gid in the config"));
    }
    let program = &argv[0];
    let candidates = if program.contains('/') {
        vec![program.clone()]
    } else {
        let path = env.get("PATH").map_or(DEFAULT_PATH, String::as_str);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
            .collect()
    };
    Ok(Resolved { argv, env, workdir, uid, gid, candidates })
}

/// The image's `User`: numeric `uid` or `uid:gid`. Root (0) is never taken from the image: root must be asked
/// for in the signed config. A user name is refused (the image's /etc/passwd is not read on the host).
fn user(user: Option<&str>) -> Result<(Option<u32>, Option<u32>), String> {
    let Some(user) = user else { return Ok((None, None)) };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let number = |t: &str| {
        t.parse::<u32>().map_err(|_| {
            format!("the image's user {user:?} is not numeric (uid or uid:gid): give uid and gid in the config")
        })
    };
    let nonzero = |n: u32| (n != 0).then_some(n);
    Ok((nonzero(number(u)?), g.map(number).transpose()?.and_then(nonzero)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::model::{Program, Registry};

    fn image(exec: Option<&str>, args_given: bool) -> Image {
        Image {
            reference: "r.example/a@sha256:00".into(),
            registry: Registry::default(),
            exec: exec.map(str::to_string),
            args_given,
            workdir_given: false,
            uid_given: false,
            gid_given: false,
            binds: vec![],
        }
    }

    fn config() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/bin/app".into()],
            cmd: vec!["--serve".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into(), "KEEP=1".into()],
            working_dir: Some("/srv".into()),
            user: Some("1000:1001".into()),
            ..ImageConfig::default()
        }
    }

    fn def(args: &[&str]) -> Service {
        let mut s = crate::services::test_service::service("web", "/unused", args);
        s.env.insert("MODE".into(), "config".into());
        s
    }

    #[test]
    fn the_image_config_runs_unless_the_config_overrides_it() {
        let r = resolve(&def(&[]), &image(None, false), &config()).unwrap();
        assert_eq!(r.argv, ["/bin/app", "--serve"]);
        assert_eq!((r.env["MODE"].as_str(), r.env["KEEP"].as_str(), r.env["PATH"].as_str()), ("config", "1", "/bin"));
        assert_eq!((r.workdir.as_str(), r.uid, r.gid), ("/srv", 1000, 1001));
        assert_eq!(r.candidates, ["/bin/app"]);
        // args replace the cmd; exec replaces the entrypoint and drops the image's cmd.
        assert_eq!(resolve(&def(&["-v"]), &image(None, true), &config()).unwrap().argv, ["/bin/app", "-v"]);
        assert_eq!(resolve(&def(&[]), &image(Some("/bin/sh"), false), &config()).unwrap().argv, ["/bin/sh"]);
        let mut given = image(None, false);
        (given.workdir_given, given.uid_given, given.gid_given) = (true, true, true);
        let mut d = def(&[]);
        (d.workdir, d.uid, d.gid) = ("/data".into(), 0, 0);
        let r = resolve(&d, &given, &config()).unwrap();
        assert_eq!((r.workdir.as_str(), r.uid, r.gid), ("/data", 0, 0), "root when the config asks for it");
        assert!(matches!(d.program, Program::Path(_)));
    }

    #[test]
    fn root_and_names_from_the_image_are_not_taken() {
        let mut c = config();
        c.user = Some("0".into());
        let r = resolve(&def(&[]), &image(None, false), &c).unwrap();
        assert_eq!((r.uid, r.gid), (DEFAULT_SERVICE_ID, DEFAULT_SERVICE_ID));
        c.user = Some("nginx".into());
        assert!(resolve(&def(&[]), &image(None, false), &c).unwrap_err().contains("not numeric"));
        c.user = Some("4294967294".into());
        assert!(resolve(&def(&[]), &image(None, false), &c).unwrap_err().contains("kept for PID 1"));
    }

    #[test]
    fn a_bare_program_name_is_looked_up_on_path_and_an_empty_image_needs_exec() {
        let c = ImageConfig { cmd: vec!["app".into()], env: vec!["PATH=/usr/bin:relative:/bin/".into()], ..config() };
        let c = ImageConfig { entrypoint: vec![], ..c };
        assert_eq!(resolve(&def(&[]), &image(None, false), &c).unwrap().candidates, ["/usr/bin/app", "/bin/app"]);
        let empty = ImageConfig::default();
        assert!(resolve(&def(&[]), &image(None, false), &empty).unwrap_err().contains("give `exec`"));
        let r = resolve(&def(&[]), &image(Some("/x"), false), &empty).unwrap();
        assert_eq!((r.env["PATH"].as_str(), r.workdir.as_str()), (DEFAULT_PATH, "/"));
    }
}
