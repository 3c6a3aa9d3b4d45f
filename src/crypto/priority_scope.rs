//! What the hashing threads' low priority ranks them against (`SESSIOND_HASH_PRIORITY`).
//!
//! A nice value or `SCHED_IDLE` orders threads only inside the group the kernel shares CPU
//! time between first. With session autogroups (`kernel.sched_autogroup_enabled=1`, the
//! default of Debian's and Ubuntu's kernels) every session is such a group; under a cgroup with
//! the CPU controller, every cgroup is. Then sessiond's hashing threads yield to sessiond's
//! own request threads, but a process of another group on the same cores (PostgreSQL, started
//! by its own service) gets no more of a core than sessiond's whole group, hashing included:
//! with hashing on every core, a refresh waits for PostgreSQL's turn under a login flood.
//! Measured in docs/benchmarks.md (session 12): refresh p99 under the flood with two slots at
//! nice 19 was 125–142 ms with autogroups and 14–16 ms without.
//!
//! sessiond cannot leave its own group, so it says at start-up which of these holds (see
//! `app.rs`), and warns when hashing may take every core of a group that other processes
//! share cores with.

use std::fmt;

/// Where the kernel ranks the hashing threads' priority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriorityScope {
    /// No grouping: hashing yields to every normal thread on the machine.
    Machine,
    /// Session autogroups: hashing yields to sessiond's threads only; each other session's
    /// processes get as much CPU as sessiond's whole group.
    Autogroup,
    /// A cgroup with the CPU controller (its path): hashing yields to the threads of that
    /// cgroup only; other cgroups get CPU by their weights.
    Cgroup(String),
}

impl PriorityScope {
    /// Whether hashing yields to every other process on the machine.
    pub fn is_machine_wide(&self) -> bool {
        matches!(self, Self::Machine)
    }

    /// Whether `slots` hashing threads on `cores` cores can keep other groups' processes
    /// (PostgreSQL) waiting, whatever their priority: they may take every core, and the kernel
    /// shares cores between groups before it looks at priorities. On one core no setting
    /// leaves a core free, so there is nothing to advise there.
    pub fn hashing_may_delay_others(&self, slots: usize, cores: usize) -> bool {
        cores > 1 && slots >= cores && !self.is_machine_wide()
    }
}

impl fmt::Display for PriorityScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine => f.write_str("every process on the machine"),
            Self::Autogroup => f.write_str("sessiond's own threads only (session autogroups)"),
            Self::Cgroup(path) => write!(f, "the threads of sessiond's cgroup {path} only"),
        }
    }
}

/// This process's scope, read from `/proc` and `/sys/fs/cgroup`; `None` where they cannot be
/// read (not Linux). Inside a container's cgroup namespace the container's cgroup reads as
/// `/`: on cgroup v2 it is told from the host's root by its `cpu.weight` file, which only a
/// child cgroup with the CPU controller has; on cgroup v1 it cannot be told apart, so such a
/// container shows as [`PriorityScope::Autogroup`] or [`PriorityScope::Machine`] although its
/// cgroup groups it.
pub fn current() -> Option<PriorityScope> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let autogroup = Autogroup {
        enabled: std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").ok(),
        own: std::fs::read_to_string("/proc/self/autogroup").ok(),
    };
    Some(scope_from(&cgroups, &autogroup, |dir, file| {
        std::fs::read_to_string(format!("/sys/fs/cgroup{dir}/{file}")).ok()
    }))
}

/// The texts of the two autogroup files; each is absent on a kernel without autogroups.
#[derive(Default)]
struct Autogroup {
    /// `/proc/sys/kernel/sched_autogroup_enabled`.
    enabled: Option<String>,
    /// `/proc/self/autogroup`: `/autogroup-<id> nice <n>`, or empty for a process of the root
    /// autogroup (the session of init, where a container's or a CI runner's processes often
    /// are). The kernel schedules the root autogroup's threads in the root task group, each one
    /// beside every other session's group, so their priority ranks them machine-wide.
    own: Option<String>,
}

/// The scope from the text of `/proc/self/cgroup`, the autogroup files and a reader of a file
/// of a cgroup v2 directory (`cgroup_file(dir, name)`, `dir` empty for the root).
///
/// The kernel applies autogroups only to tasks in the root CPU cgroup, so a CPU cgroup is
/// checked first: a cgroup v1 hierarchy with the `cpu` controller, a cgroup v2 path whose
/// parent enables `cpu` for its children, or a cgroup v2 namespace root with `cpu.weight`.
fn scope_from(
    proc_cgroup: &str,
    autogroup: &Autogroup,
    cgroup_file: impl Fn(&str, &str) -> Option<String>,
) -> PriorityScope {
    let mut v2_path = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "cpu") {
            // cgroup v1: the cpu hierarchy alone decides.
            return if path == "/" {
                by_autogroup(autogroup)
            } else {
                PriorityScope::Cgroup(path.to_owned())
            };
        }
        if controllers.is_empty() {
            v2_path = Some(path);
        }
    }
    match v2_path {
        // The root as this process sees it: the host's (no `cpu.weight`), or a cgroup
        // namespace's, a container's own cgroup, which has one when the CPU controller is on.
        Some("/") if cgroup_file("", "cpu.weight").is_some() => {
            return PriorityScope::Cgroup("/".to_owned());
        }
        Some("/") => {}
        Some(path) => {
            let parent = match path.rfind('/') {
                Some(0) | None => "",
                Some(i) => &path[..i],
            };
            let cpu_enabled = cgroup_file(parent, "cgroup.subtree_control")
                .is_some_and(|text| text.split_whitespace().any(|c| c == "cpu"));
            if cpu_enabled {
                return PriorityScope::Cgroup(path.to_owned());
            }
        }
        None => {}
    }
    by_autogroup(autogroup)
}

/// Autogroups group this process only when they are on and it is in a session's own group.
fn by_autogroup(autogroup: &Autogroup) -> PriorityScope {
    let enabled = autogroup.enabled.as_deref().map(str::trim) == Some("1");
    let in_own_group = autogroup
        .own
        .as_deref()
        .is_some_and(|own| own.starts_with("/autogroup-"));
    if enabled && in_own_group {
        PriorityScope::Autogroup
    } else {
        PriorityScope::Machine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_v2(_: &str, _: &str) -> Option<String> {
        None
    }

    /// Autogroups on or off (`"1"`, `"0"`), this process in a session's own group.
    fn sessions(enabled: &str) -> Autogroup {
        Autogroup {
            enabled: Some(format!("{enabled}\n")),
            own: Some("/autogroup-85 nice 0\n".into()),
        }
    }

    #[test]
    fn root_cgroup_with_autogroups_is_autogroup_and_without_is_machine() {
        let v1_root = "9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n";
        assert_eq!(
            scope_from(v1_root, &sessions("1"), no_v2),
            PriorityScope::Autogroup
        );
        assert_eq!(
            scope_from(v1_root, &sessions("0"), no_v2),
            PriorityScope::Machine
        );
        // A kernel without autogroups has neither file.
        let none = Autogroup::default();
        assert_eq!(scope_from(v1_root, &none, no_v2), PriorityScope::Machine);
        assert!(scope_from(v1_root, &sessions("0"), no_v2).is_machine_wide());
    }

    #[test]
    fn the_root_autogroup_ranks_machine_wide() {
        // init's session, where a container's or a CI runner's processes may be: the kernel
        // prints nothing for it, and schedules its threads beside every session's group.
        let root_session = Autogroup {
            enabled: Some("1\n".into()),
            own: Some(String::new()),
        };
        assert_eq!(
            scope_from("0::/\n", &root_session, no_v2),
            PriorityScope::Machine
        );
        let unreadable = Autogroup {
            enabled: Some("1".into()),
            own: None,
        };
        assert_eq!(
            scope_from("0::/\n", &unreadable, no_v2),
            PriorityScope::Machine
        );
    }

    #[test]
    fn a_v1_cpu_cgroup_groups_whatever_the_autogroup_setting() {
        let text = "4:cpu,cpuacct:/system.slice/sessiond.service\n0::/\n";
        for autogroup in [sessions("1"), sessions("0"), Autogroup::default()] {
            assert_eq!(
                scope_from(text, &autogroup, no_v2),
                PriorityScope::Cgroup("/system.slice/sessiond.service".into())
            );
        }
    }

    #[test]
    fn a_v2_cgroup_groups_only_where_its_parent_enables_cpu() {
        let text = "0::/system.slice/sessiond.service\n";
        let asked = std::cell::RefCell::new(Vec::new());
        let with_cpu = |dir: &str, file: &str| {
            asked.borrow_mut().push(format!("{dir}/{file}"));
            Some("cpuset cpu io memory pids\n".to_owned())
        };
        assert_eq!(
            scope_from(text, &sessions("1"), with_cpu),
            PriorityScope::Cgroup("/system.slice/sessiond.service".into())
        );
        assert_eq!(
            asked.borrow().as_slice(),
            ["/system.slice/cgroup.subtree_control"]
        );
        let without_cpu = |_: &str, _: &str| Some("memory pids\n".to_owned());
        assert_eq!(
            scope_from(text, &sessions("1"), without_cpu),
            PriorityScope::Autogroup
        );
        assert_eq!(
            scope_from(text, &sessions("0"), without_cpu),
            PriorityScope::Machine
        );
        // A first-level cgroup's parent is the root directory.
        let top = "0::/sessiond\n";
        let root_only = |dir: &str, _: &str| (dir.is_empty()).then(|| "cpu memory".to_owned());
        assert_eq!(
            scope_from(top, &sessions("0"), root_only),
            PriorityScope::Cgroup("/sessiond".into())
        );
    }

    #[test]
    fn a_v2_namespace_root_with_cpu_weight_is_the_containers_cgroup() {
        let root = "0::/\n";
        let container = |dir: &str, file: &str| {
            (dir.is_empty() && file == "cpu.weight").then(|| "100\n".to_owned())
        };
        for autogroup in [sessions("1"), sessions("0")] {
            assert_eq!(
                scope_from(root, &autogroup, container),
                PriorityScope::Cgroup("/".into())
            );
        }
        // The host's root cgroup has no cpu.weight: autogroups decide.
        assert_eq!(
            scope_from(root, &sessions("1"), no_v2),
            PriorityScope::Autogroup
        );
    }

    #[test]
    fn only_hashing_on_every_core_of_a_group_may_delay_others() {
        let grouped = [
            PriorityScope::Autogroup,
            PriorityScope::Cgroup("/system.slice/sessiond.service".into()),
        ];
        for scope in &grouped {
            assert!(scope.hashing_may_delay_others(2, 2), "{scope}");
            assert!(scope.hashing_may_delay_others(8, 4), "{scope}");
            // The default leaves a core free.
            assert!(!scope.hashing_may_delay_others(1, 2), "{scope}");
            assert!(!scope.hashing_may_delay_others(1, 1), "{scope}");
        }
        assert!(!PriorityScope::Machine.hashing_may_delay_others(2, 2));
    }

    #[test]
    fn malformed_lines_are_ignored() {
        assert_eq!(
            scope_from("garbage\n\n1:cpu\n", &sessions("1"), no_v2),
            PriorityScope::Autogroup
        );
    }

    #[test]
    fn this_process_reads_as_its_proc_files_say() {
        #[cfg(target_os = "linux")]
        {
            let scope = current().expect("/proc/self/cgroup is readable on Linux");
            let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
            let enabled = read("/proc/sys/kernel/sched_autogroup_enabled").trim() == "1";
            // The kernel names this process's group only when it is a session's own.
            let own_group = read("/proc/self/autogroup").starts_with("/autogroup-");
            let cgroups = read("/proc/self/cgroup");
            // A cgroup v1 cpu hierarchy with this process at its root.
            let v1_cpu_root = cgroups.lines().any(|line| {
                let fields: Vec<&str> = line.splitn(3, ':').collect();
                matches!(fields.as_slice(), [_, controllers, "/"]
                    if controllers.split(',').any(|c| c == "cpu"))
            });
            match &scope {
                PriorityScope::Autogroup => assert!(enabled && own_group, "{cgroups}"),
                PriorityScope::Machine => assert!(!(enabled && own_group), "{cgroups}"),
                PriorityScope::Cgroup(path) => {
                    assert!(cgroups.contains(path.as_str()), "{path} in {cgroups}");
                    assert!(!v1_cpu_root, "{cgroups}");
                }
            }
            if enabled && own_group && v1_cpu_root {
                assert_eq!(scope, PriorityScope::Autogroup);
            }
        }
        #[cfg(not(target_os = "linux"))]
        assert_eq!(current(), None);
    }
}
