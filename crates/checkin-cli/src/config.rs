//! The `checkin.toml` configuration file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use checkin_core::sites::{Site, SiteRegistry};
use checkin_core::validate::TimePolicy;
use checkin_ledger::sequencer::SequencerConfig;
use checkin_ledger::topology::TopologySettings;
use checkin_ledger::writer::AppendMode;
use checkin_projections::segments::SegmentRules;
use serde::Deserialize;

/// Directory of site registry files, beside the configuration file.
///
/// Each `*.toml` file in it has `[sites.ID]` tables like `checkin.toml`.
/// `checkin import` writes the venues of a data set there, and every role
/// reads them at start beside the sites of the configuration file.
pub const SITES_DIR: &str = "sites.d";

/// One site registry file.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// Sites by id.
    #[serde(default)]
    pub sites: std::collections::BTreeMap<String, Site>,
}

/// Whole configuration file; every section is optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Ledger name written into the genesis record.
    pub ledger: String,
    /// Accept check-ins for sites not listed under `[sites]`, with the Asia/Shanghai zone.
    pub allow_unknown_sites: bool,
    pub sequencer: SequencerSection,
    pub validation: ValidationSection,
    pub intake: IntakeSection,
    pub streams: StreamsSection,
    pub projections: ProjectionsSection,
    pub segments: SegmentRules,
    pub archive: ArchiveSection,
    pub sites: HashMap<String, Site>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ledger: "default".into(),
            allow_unknown_sites: false,
            sequencer: SequencerSection::default(),
            validation: ValidationSection::default(),
            intake: IntakeSection::default(),
            streams: StreamsSection::default(),
            projections: ProjectionsSection::default(),
            segments: SegmentRules::default(),
            archive: ArchiveSection::default(),
            sites: HashMap::new(),
        }
    }
}

/// Durability mode of a local nats-server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// nats-server's default: the file store syncs to disk every two minutes.
    #[default]
    Fast,
    /// The local nats-server runs with `sync_interval: always`.
    Durable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppendSetting {
    #[default]
    Atomic,
    Pipelined,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerSection {
    pub durability: Durability,
    pub append: AppendSetting,
    pub batch_size: usize,
}

impl Default for SequencerSection {
    fn default() -> Self {
        Self {
            durability: Durability::Fast,
            append: AppendSetting::Atomic,
            batch_size: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    pub max_future_skew_s: i64,
    pub horizon_days: i64,
}

impl Default for ValidationSection {
    fn default() -> Self {
        let policy = TimePolicy::default();
        Self {
            max_future_skew_s: policy.max_future_skew_s,
            horizon_days: policy.horizon_s / 86_400,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSection {
    pub max_bytes: i64,
    pub duplicate_window_s: u64,
}

impl Default for IntakeSection {
    fn default() -> Self {
        let topology = TopologySettings::default();
        Self {
            max_bytes: topology.intake_max_bytes,
            duplicate_window_s: topology.intake_duplicate_window.as_secs(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectionsSection {
    /// A scan within this many seconds of the customer's previous scan at
    /// the same site belongs to the same visit.
    pub visit_window_s: i64,
    /// Storage engine of the read models: "sled" (the default) or "fjall".
    pub store: checkin_projections::store::Backend,
}

impl Default for ProjectionsSection {
    fn default() -> Self {
        Self {
            visit_window_s: checkin_projections::activity::DEFAULT_VISIT_WINDOW_S,
            store: checkin_projections::store::Backend::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSection {
    /// Directory of archive segment files, relative to the working directory.
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsSection {
    /// Replicas per stream: 1 on a single server, 3 in a cluster.
    pub replicas: usize,
}

impl Default for StreamsSection {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

impl Config {
    /// Loads the file named by `--config`, else `./checkin.toml` when present, else defaults.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<(Self, Option<PathBuf>)> {
        let path = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from("checkin.toml")).filter(|path| path.exists()),
        };
        let sites_dir = Self::sites_dir(path.as_deref());
        let Some(path) = path else {
            let mut config = Self::default();
            config.merge_site_files(&sites_dir)?;
            return Ok((config, None));
        };

        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config.merge_site_files(&sites_dir)?;
        config
            .check()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok((config, Some(path)))
    }

    /// Returns the site registry directory that belongs to a configuration file.
    pub fn sites_dir(config_path: Option<&Path>) -> PathBuf {
        config_path
            .and_then(Path::parent)
            .unwrap_or(Path::new(""))
            .join(SITES_DIR)
    }

    /// Adds the sites of every `*.toml` file in `dir`, in file name order.
    /// A site defined twice with different settings is an error.
    fn merge_site_files(&mut self, dir: &Path) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => {
                return Err(err).with_context(|| format!("failed to list {}", dir.display()));
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("failed to list {}", dir.display()))?
                .path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                paths.push(path);
            }
        }
        paths.sort();

        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read site file {}", path.display()))?;
            let file: SiteFile = toml::from_str(&text)
                .with_context(|| format!("invalid site file {}", path.display()))?;
            for (id, site) in file.sites {
                match self.sites.get(&id) {
                    Some(existing) if *existing != site => anyhow::bail!(
                        "site {id} in {} differs from its earlier definition; remove one of them",
                        path.display()
                    ),
                    Some(_) => {}
                    None => {
                        self.sites.insert(id, site);
                    }
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=1000).contains(&self.sequencer.batch_size),
            "sequencer.batch_size must be between 1 and 1000, found {}",
            self.sequencer.batch_size
        );
        anyhow::ensure!(
            self.validation.horizon_days > 0,
            "validation.horizon_days must be positive"
        );
        anyhow::ensure!(
            self.intake.max_bytes > 0,
            "intake.max_bytes must be positive, because intake must stay bounded; found {}",
            self.intake.max_bytes
        );
        anyhow::ensure!(
            self.validation.max_future_skew_s >= 0,
            "validation.max_future_skew_s must not be negative"
        );
        anyhow::ensure!(
            matches!(self.streams.replicas, 1..=5),
            "streams.replicas must be between 1 and 5, found {}",
            self.streams.replicas
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.projections.visit_window_s),
            "projections.visit_window_s must be between 1 and 86400 seconds, found {}",
            self.projections.visit_window_s
        );
        for (id, site) in &self.sites {
            anyhow::ensure!(
                site.day_start_hour < 24,
                "sites.{id}.day_start_hour must be 0-23"
            );
        }
        Ok(())
    }

    /// Builds the sequencer's settings.
    pub fn sequencer_config(&self) -> SequencerConfig {
        SequencerConfig {
            ledger_name: self.ledger.clone(),
            batch_size: self.sequencer.batch_size,
            append_mode: match self.sequencer.append {
                AppendSetting::Atomic => AppendMode::Atomic,
                AppendSetting::Pipelined => AppendMode::Pipelined,
            },
            time_policy: TimePolicy {
                max_future_skew_s: self.validation.max_future_skew_s,
                horizon_s: self.validation.horizon_days * 86_400,
            },
            sites: SiteRegistry {
                sites: self.sites.clone(),
                allow_unknown_sites: self.allow_unknown_sites,
            },
            topology: self.topology(),
            archive_dir: self.archive.dir.clone(),
            ..SequencerConfig::default()
        }
    }

    /// Builds the stream settings.
    pub fn topology(&self) -> TopologySettings {
        TopologySettings {
            intake_max_bytes: self.intake.max_bytes,
            intake_duplicate_window: Duration::from_secs(self.intake.duplicate_window_s.max(1)),
            replicas: self.streams.replicas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn site_files_add_sites() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("checkin.toml");
        write(&config, "[sites.sh-jingan]\nname = \"静安店\"\n");
        std::fs::create_dir(dir.path().join(SITES_DIR)).unwrap();
        write(
            &dir.path().join(SITES_DIR).join("venues.toml"),
            "[sites.fsq-1]\ntime_zone = \"America/New_York\"\n",
        );
        write(
            &dir.path().join(SITES_DIR).join("notes.txt"),
            "not a site file",
        );

        let (loaded, _) = Config::load(Some(&config)).unwrap();
        assert_eq!(loaded.sites.len(), 2);
        assert_eq!(
            loaded.sites["fsq-1"].time_zone,
            chrono_tz::America::New_York
        );
        assert_eq!(loaded.sites["sh-jingan"].name.as_deref(), Some("静安店"));
    }

    #[test]
    fn conflicting_site_definition_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("checkin.toml");
        write(&config, "[sites.fsq-1]\ntime_zone = \"Asia/Shanghai\"\n");
        std::fs::create_dir(dir.path().join(SITES_DIR)).unwrap();
        write(
            &dir.path().join(SITES_DIR).join("venues.toml"),
            "[sites.fsq-1]\ntime_zone = \"America/New_York\"\n",
        );

        let error = Config::load(Some(&config)).unwrap_err();
        assert!(
            error.to_string().contains("site fsq-1"),
            "unexpected error: {error:#}"
        );
    }

    #[test]
    fn identical_site_definition_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("checkin.toml");
        write(&config, "[sites.fsq-1]\ntime_zone = \"America/New_York\"\n");
        std::fs::create_dir(dir.path().join(SITES_DIR)).unwrap();
        write(
            &dir.path().join(SITES_DIR).join("venues.toml"),
            "[sites.fsq-1]\ntime_zone = \"America/New_York\"\n",
        );

        let (loaded, _) = Config::load(Some(&config)).unwrap();
        assert_eq!(loaded.sites.len(), 1);
    }
}
