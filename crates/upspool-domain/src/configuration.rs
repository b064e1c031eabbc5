//! `printJobConfiguration`: every property nullable, enums matched case-insensitively and
//! stored in canonical spelling, unknown properties refused (a typo should not silently print
//! one-sided). `@odata.type` annotations are accepted and ignored, as Graph bodies carry them.

use serde::{Deserialize, Serialize};

use crate::wire_enum;

wire_enum! { pub enum Quality { Low = "low", Medium = "medium", High = "high", UnknownFutureValue = "unknownFutureValue" } }
wire_enum! { pub enum FeedOrientation { LongEdgeFirst = "longEdgeFirst", ShortEdgeFirst = "shortEdgeFirst", UnknownFutureValue = "unknownFutureValue" } }
wire_enum! {
    pub enum Orientation {
        Portrait = "portrait", Landscape = "landscape", ReverseLandscape = "reverseLandscape",
        ReversePortrait = "reversePortrait", UnknownFutureValue = "unknownFutureValue",
    }
}
wire_enum! {
    pub enum DuplexMode {
        FlipOnLongEdge = "flipOnLongEdge", FlipOnShortEdge = "flipOnShortEdge", OneSided = "oneSided",
        UnknownFutureValue = "unknownFutureValue",
    }
}
wire_enum! {
    pub enum ColorMode {
        BlackAndWhite = "blackAndWhite", Grayscale = "grayscale", Color = "color", Auto = "auto",
        UnknownFutureValue = "unknownFutureValue",
    }
}
wire_enum! {
    pub enum MultipageLayout {
        ClockwiseFromTopLeft = "clockwiseFromTopLeft",
        CounterclockwiseFromTopLeft = "counterclockwiseFromTopLeft",
        CounterclockwiseFromTopRight = "counterclockwiseFromTopRight",
        ClockwiseFromTopRight = "clockwiseFromTopRight",
        CounterclockwiseFromBottomLeft = "counterclockwiseFromBottomLeft",
        ClockwiseFromBottomLeft = "clockwiseFromBottomLeft",
        CounterclockwiseFromBottomRight = "counterclockwiseFromBottomRight",
        ClockwiseFromBottomRight = "clockwiseFromBottomRight",
        UnknownFutureValue = "unknownFutureValue",
    }
}
wire_enum! {
    pub enum Scaling {
        Auto = "auto", ShrinkToFit = "shrinkToFit", Fill = "fill", Fit = "fit", None = "none",
        UnknownFutureValue = "unknownFutureValue",
    }
}
wire_enum! {
    pub enum Finishing {
        None = "none", Staple = "staple", Punch = "punch", Cover = "cover", Bind = "bind",
        SaddleStitch = "saddleStitch", StitchEdge = "stitchEdge", StapleTopLeft = "stapleTopLeft",
        StapleBottomLeft = "stapleBottomLeft", StapleTopRight = "stapleTopRight",
        StapleBottomRight = "stapleBottomRight", StitchLeftEdge = "stitchLeftEdge",
        StitchTopEdge = "stitchTopEdge", StitchRightEdge = "stitchRightEdge",
        StitchBottomEdge = "stitchBottomEdge", StapleDualLeft = "stapleDualLeft",
        StapleDualTop = "stapleDualTop", StapleDualRight = "stapleDualRight",
        StapleDualBottom = "stapleDualBottom", UnknownFutureValue = "unknownFutureValue",
        StapleTripleLeft = "stapleTripleLeft", StapleTripleTop = "stapleTripleTop",
        StapleTripleRight = "stapleTripleRight", StapleTripleBottom = "stapleTripleBottom",
        BindLeft = "bindLeft", BindTop = "bindTop", BindRight = "bindRight", BindBottom = "bindBottom",
        FoldAccordion = "foldAccordion", FoldDoubleGate = "foldDoubleGate", FoldGate = "foldGate",
        FoldHalf = "foldHalf", FoldHalfZ = "foldHalfZ", FoldLeftGate = "foldLeftGate",
        FoldLetter = "foldLetter", FoldParallel = "foldParallel", FoldPoster = "foldPoster",
        FoldRightGate = "foldRightGate", FoldZ = "foldZ", FoldEngineeringZ = "foldEngineeringZ",
        PunchTopLeft = "punchTopLeft", PunchBottomLeft = "punchBottomLeft",
        PunchTopRight = "punchTopRight", PunchBottomRight = "punchBottomRight",
        PunchDualLeft = "punchDualLeft", PunchDualTop = "punchDualTop",
        PunchDualRight = "punchDualRight", PunchDualBottom = "punchDualBottom",
        PunchTripleLeft = "punchTripleLeft", PunchTripleTop = "punchTripleTop",
        PunchTripleRight = "punchTripleRight", PunchTripleBottom = "punchTripleBottom",
        PunchQuadLeft = "punchQuadLeft", PunchQuadTop = "punchQuadTop",
        PunchQuadRight = "punchQuadRight", PunchQuadBottom = "punchQuadBottom",
        Fold = "fold", Trim = "trim", Bale = "bale", BookletMaker = "bookletMaker", Coat = "coat",
        Laminate = "laminate", TrimAfterPages = "trimAfterPages",
        TrimAfterDocuments = "trimAfterDocuments", TrimAfterCopies = "trimAfterCopies",
        TrimAfterJob = "trimAfterJob",
    }
}

/// `integerRange`, used by `pageRanges`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegerRange {
    pub start: i64,
    pub end: i64,
    #[serde(rename = "@odata.type", default, skip_serializing)]
    pub odata_type: Option<serde_json::Value>,
}

/// `printMargin`, in microns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrintMargin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottom: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<i32>,
    #[serde(rename = "@odata.type", default, skip_serializing)]
    pub odata_type: Option<serde_json::Value>,
}

/// `printJobConfiguration`. Only the properties that were set are emitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrintJobConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_ranges: Option<Vec<IntegerRange>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpi: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_orientation: Option<FeedOrientation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<Orientation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplex_mode: Option<DuplexMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_mode: Option<ColorMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_bin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<PrintMargin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finishings: Option<Vec<Finishing>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_per_sheet: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipage_layout: Option<MultipageLayout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_pdf_to_page: Option<bool>,
    #[serde(rename = "@odata.type", default, skip_serializing)]
    pub odata_type: Option<serde_json::Value>,
}

impl PrintJobConfiguration {
    /// Range checks serde cannot express. Returns a message for the client.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = self.copies {
            if !(1..=999).contains(&c) {
                return Err(format!(
                    "configuration.copies must be between 1 and 999, not {c}"
                ));
            }
        }
        if let Some(d) = self.dpi {
            if d <= 0 {
                return Err(format!("configuration.dpi must be positive, not {d}"));
            }
        }
        if let Some(p) = self.pages_per_sheet {
            if !(1..=16).contains(&p) {
                return Err(format!(
                    "configuration.pagesPerSheet must be between 1 and 16, not {p}"
                ));
            }
        }
        for r in self.page_ranges.iter().flatten() {
            if r.start < 1 || r.end < r.start {
                return Err(format!(
                    "configuration.pageRanges entries need 1 <= start <= end, not {}-{}",
                    r.start, r.end
                ));
            }
        }
        for s in [
            &self.input_bin,
            &self.output_bin,
            &self.media_size,
            &self.media_type,
        ]
        .into_iter()
        .flatten()
        {
            if s.len() > 256 {
                return Err("configuration string properties are limited to 256 characters".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_case_insensitive_and_emitted_canonically() {
        let c: PrintJobConfiguration = serde_json::from_value(serde_json::json!({
            "@odata.type": "microsoft.graph.printJobConfiguration",
            "duplexMode": "FLIPONLONGEDGE",
            "multipageLayout": "counterClockwiseFromTopLeft",
            "finishings": null,
            "copies": 2
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"duplexMode":"flipOnLongEdge","multipageLayout":"counterclockwiseFromTopLeft","copies":2})
        );
    }

    #[test]
    fn unknown_values_and_properties_are_refused() {
        let bad_enum = serde_json::from_value::<PrintJobConfiguration>(
            serde_json::json!({"colorMode": "sepia"}),
        );
        assert!(bad_enum.unwrap_err().to_string().contains("sepia"));
        let unknown =
            serde_json::from_value::<PrintJobConfiguration>(serde_json::json!({"colour": "color"}));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let zero_copies: PrintJobConfiguration =
            serde_json::from_value(serde_json::json!({"copies": 0})).unwrap();
        assert!(zero_copies.validate().is_err());
    }
}
