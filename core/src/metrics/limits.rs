//! Bounds on what pushers may add to the metrics aggregate.
//!
//! Every push is hostile until counted: its size, its series, its labels
//! and what it adds to its group, its pusher's share and the aggregate as
//! a whole are each bounded by a configured limit (`PUSH_MAX_*`,
//! `METRICS_MAX_SERIES`), and a refusal names the limit it hit.

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;

/// The configured limits (docs/api.md, "Push limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushLimits {
    /// `PUSH_MAX_BYTES`: a push body, and a gzip body once inflated.
    pub max_bytes: u32,
    /// `PUSH_MAX_SERIES`: series (samples) in one push.
    pub max_series: u32,
    /// `PUSH_MAX_GROUP_SERIES`: series one group holds after a push.
    pub max_group_series: u32,
    /// `PUSH_MAX_PUSHER_GROUPS`: groups one pusher (API key or user) holds.
    pub max_pusher_groups: u32,
    /// `PUSH_MAX_PUSHER_SERIES`: series across one pusher's groups.
    pub max_pusher_series: u32,
    /// `PUSH_MAX_GROUPING_LABELS`: labels in a push path after `job`.
    pub max_grouping_labels: u32,
    /// `PUSH_MAX_LABELS`: labels one series carries, grouping labels included.
    pub max_labels: u32,
    /// `PUSH_MAX_LABEL_NAME_LEN`: characters in a label name.
    pub max_label_name: u32,
    /// `PUSH_MAX_LABEL_VALUE_LEN`: characters in a label value.
    pub max_label_value: u32,
    /// `PUSH_MAX_HELP_LEN`: characters in a family's `# HELP` text.
    pub max_help: u32,
    /// `METRICS_MAX_SERIES`: series in the whole aggregate; pushes that
    /// would add series beyond it are refused (the service's own metrics
    /// are never refused). Exposed as `tepi_metrics_series` against
    /// `tepi_metrics_series_limit`.
    pub max_total_series: u32,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_series: 2_000,
            max_group_series: 2_000,
            max_pusher_groups: 100,
            max_pusher_series: 5_000,
            max_grouping_labels: 8,
            max_labels: 12,
            max_label_name: 128,
            max_label_value: 128,
            max_help: 256,
            max_total_series: 10_000,
        }
    }
}

/// How a refusal reads: the request is too large (413), breaks a shape
/// limit (422) or would go beyond a budget (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    TooLarge,
    Invalid,
    Quota,
}

/// One of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Bytes,
    Series,
    GroupSeries,
    PusherGroups,
    PusherSeries,
    GroupingLabels,
    Labels,
    LabelName,
    LabelValue,
    Help,
    TotalSeries,
}

impl Limit {
    pub const ALL: [Self; 11] = [
        Self::Bytes,
        Self::Series,
        Self::GroupSeries,
        Self::PusherGroups,
        Self::PusherSeries,
        Self::GroupingLabels,
        Self::Labels,
        Self::LabelName,
        Self::LabelValue,
        Self::Help,
        Self::TotalSeries,
    ];

    /// The variable that configures it, which is also the name a refusal
    /// gives it.
    pub fn var(self) -> &'static str {
        match self {
            Self::Bytes => "PUSH_MAX_BYTES",
            Self::Series => "PUSH_MAX_SERIES",
            Self::GroupSeries => "PUSH_MAX_GROUP_SERIES",
            Self::PusherGroups => "PUSH_MAX_PUSHER_GROUPS",
            Self::PusherSeries => "PUSH_MAX_PUSHER_SERIES",
            Self::GroupingLabels => "PUSH_MAX_GROUPING_LABELS",
            Self::Labels => "PUSH_MAX_LABELS",
            Self::LabelName => "PUSH_MAX_LABEL_NAME_LEN",
            Self::LabelValue => "PUSH_MAX_LABEL_VALUE_LEN",
            Self::Help => "PUSH_MAX_HELP_LEN",
            Self::TotalSeries => "METRICS_MAX_SERIES",
        }
    }

    /// The range a configured value must fall in.
    pub fn range(self) -> std::ops::RangeInclusive<u32> {
        match self {
            // The exposition parser's own ceiling.
            Self::Bytes => 1_024..=1_048_576,
            Self::Series | Self::GroupSeries => 1..=100_000,
            Self::PusherGroups => 1..=10_000,
            Self::PusherSeries | Self::TotalSeries => 1..=1_000_000,
            Self::GroupingLabels | Self::Labels => 1..=64,
            Self::LabelName => 16..=1_024,
            Self::LabelValue | Self::Help => 16..=4_096,
        }
    }

    fn class(self) -> Class {
        match self {
            Self::Bytes | Self::Series => Class::TooLarge,
            Self::GroupingLabels
            | Self::Labels
            | Self::LabelName
            | Self::LabelValue
            | Self::Help => Class::Invalid,
            Self::GroupSeries | Self::PusherGroups | Self::PusherSeries | Self::TotalSeries => {
                Class::Quota
            }
        }
    }

    pub fn of(self, limits: &PushLimits) -> u32 {
        match self {
            Self::Bytes => limits.max_bytes,
            Self::Series => limits.max_series,
            Self::GroupSeries => limits.max_group_series,
            Self::PusherGroups => limits.max_pusher_groups,
            Self::PusherSeries => limits.max_pusher_series,
            Self::GroupingLabels => limits.max_grouping_labels,
            Self::Labels => limits.max_labels,
            Self::LabelName => limits.max_label_name,
            Self::LabelValue => limits.max_label_value,
            Self::Help => limits.max_help,
            Self::TotalSeries => limits.max_total_series,
        }
    }

    pub fn set(self, limits: &mut PushLimits) -> &mut u32 {
        match self {
            Self::Bytes => &mut limits.max_bytes,
            Self::Series => &mut limits.max_series,
            Self::GroupSeries => &mut limits.max_group_series,
            Self::PusherGroups => &mut limits.max_pusher_groups,
            Self::PusherSeries => &mut limits.max_pusher_series,
            Self::GroupingLabels => &mut limits.max_grouping_labels,
            Self::Labels => &mut limits.max_labels,
            Self::LabelName => &mut limits.max_label_name,
            Self::LabelValue => &mut limits.max_label_value,
            Self::Help => &mut limits.max_help,
            Self::TotalSeries => &mut limits.max_total_series,
        }
    }
}

/// A push that went beyond `limit` (configured to `max`); `detail` says
/// where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exceeded {
    pub limit: Limit,
    pub max: u32,
    pub detail: String,
}

impl Exceeded {
    pub fn new(limit: Limit, limits: &PushLimits, detail: impl Into<String>) -> Self {
        Self {
            limit,
            max: limit.of(limits),
            detail: detail.into(),
        }
    }
}

impl From<Exceeded> for ApiError {
    fn from(e: Exceeded) -> Self {
        let (limit, max, detail) = (e.limit.var(), u64::from(e.max), e.detail);
        match e.limit.class() {
            Class::TooLarge => Self::PushTooLarge { limit, max, detail },
            Class::Invalid => Self::PushLimitExceeded { limit, max, detail },
            Class::Quota => Self::PushQuotaExceeded { limit, max, detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_limit_with_the_status_its_kind_calls_for() {
        let limits = PushLimits::default();
        let status = |limit| {
            let error = ApiError::from(Exceeded::new(limit, &limits, "x"));
            (error.status().as_u16(), error.code())
        };
        assert_eq!(status(Limit::Bytes), (413, "push_too_large"));
        assert_eq!(status(Limit::Series), (413, "push_too_large"));
        assert_eq!(status(Limit::LabelValue), (422, "push_limit_exceeded"));
        assert_eq!(status(Limit::GroupingLabels), (422, "push_limit_exceeded"));
        assert_eq!(status(Limit::TotalSeries), (429, "push_quota_exceeded"));
        assert_eq!(status(Limit::PusherGroups), (429, "push_quota_exceeded"));
        for limit in Limit::ALL {
            assert!(
                limit.range().contains(&limit.of(&limits)),
                "the default of {} is within its range",
                limit.var()
            );
        }
    }
}
