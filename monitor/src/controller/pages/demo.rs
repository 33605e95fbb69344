//! The narration panel of a running demo (`secmon-tui demo --serve`), on top of the live page:
//! the step on screen, its narration, technique and expected rules (fired or waiting), the
//! defender's next move. It asks `/ui/demo` for itself again every second (the snapshot
//! changes on a key, a step's end or a fired rule: a second is as soon as a class notices).
use axum::{
    extract::State,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use maud::{Markup, html};

use super::layout::clean;
use crate::{controller::AppState, demo::narration::NarrationSnapshot};

/// The panel, or nothing when no demo runs.
pub fn panel(shared: &AppState) -> Option<Markup> {
    shared.controls.demo.current().map(|s| markup(&s))
}

/// `GET /ui/demo`: the panel again (HTMX polls it); 404 when no demo runs.
pub async fn fragment(State(shared): State<AppState>) -> Response {
    match panel(&shared) {
        Some(markup) => Html(markup.into_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "no demo runs here").into_response(),
    }
}

fn markup(demo: &NarrationSnapshot) -> Markup {
    html! {
        section.narration #demo-narration hx-get="/ui/demo" hx-trigger="every 1s" hx-swap="outerHTML"
            aria-live="polite" {
            div.narration-head {
                span.narration-scenario { "Demo: " (clean(&demo.title)) }
                span.narration-how { " (" (clean(&demo.how)) ")" }
                span.narration-play #demo-play { (demo.play_state()) }
            }
            @match &demo.step {
                None => {
                    h2 #demo-step { "Introduction · " (demo.steps) " steps" }
                    p.narration-text { (clean(&demo.summary)) }
                }
                Some(step) => {
                    h2 #demo-step { "Step " (step.number) " of " (demo.steps) ": " (clean(&step.title)) }
                    p.narration-text { (clean(&step.narration)) }
                    p.narration-technique {
                        "ATT&CK " b { (clean(&step.technique.id)) } " " (clean(&step.technique.name))
                    }
                    ul.narration-rules #demo-rules {
                        @for rule in &step.expect {
                            li.(if rule.fired { "fired" } else { "waiting" }) data-rule=(rule.rule) {
                                (if rule.fired { "✔ fired " } else { "… waiting " })
                                code { (clean(&rule.rule)) }
                            }
                        }
                    }
                    p.narration-defender { b { "Defender: " } (clean(&step.defender)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::narration::{ExpectedRule, StepSnapshot, TechniqueSnapshot};

    #[test]
    fn every_field_is_escaped_and_each_rule_says_whether_it_fired() {
        let demo = NarrationSnapshot {
            scenario: "web".to_string(),
            title: "<script>alert(1)</script>".to_string(),
            summary: String::new(),
            how: "live".to_string(),
            steps: 3,
            step: Some(StepSnapshot {
                number: 2,
                title: "Shell & <b>".to_string(),
                narration: "The attacker \"runs\" <img src=x>".to_string(),
                technique: TechniqueSnapshot {
                    id: "T1059.004".to_string(),
                    name: "Unix Shell".to_string(),
                },
                expect: vec![
                    ExpectedRule {
                        rule: "reverse_shell".to_string(),
                        fired: true,
                    },
                    ExpectedRule {
                        rule: "<rule>".to_string(),
                        fired: false,
                    },
                ],
                defender: "Kill it".to_string(),
            }),
            running: true,
            auto: false,
        };
        let html = markup(&demo).into_string();
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<rule>"));
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            html.contains("Step 2 of 3: Shell &amp; &lt;b&gt;"),
            "{html}"
        );
        assert!(
            html.contains(r#"<li class="fired" data-rule="reverse_shell">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<li class="waiting" data-rule="&lt;rule&gt;">"#),
            "{html}"
        );
        assert!(html.contains("running"));
    }
}
