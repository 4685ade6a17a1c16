//! The desktop client's logic, without any Slint type, so that it can be
//! tested without a window. `gui::app` adapts it to the `.slint` views.

pub mod chart;
pub mod dashboard;
pub mod files;
pub mod hosts;
pub mod info;
pub mod jobs;
pub mod output;
pub mod recall;
pub mod rollout;
pub mod settings;
pub mod transfers;
