//! The talk script (R-LINE-6): the profile's Japanese Markdown, split into sections that the
//! console shows by path.

use serde::Serialize;

/// One section of the script.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScriptSection {
    /// `s1`, `s2` …, in order.
    pub id: String,
    /// The `## ` heading.
    pub title: String,
    /// The paths it belongs to (`common` for every path).
    pub paths: Vec<String>,
    /// The body as HTML; raw HTML in the script is escaped.
    pub html: String,
}

fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{html, Event, Parser};
    // Raw HTML in the script is shown as text, never rendered: the page trusts this HTML.
    let events = Parser::new(md).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// Splits `talk-script.md` into sections: `## title`, then `paths: a, b`, then Markdown.
pub fn parse_talk_script(text: &str) -> Vec<ScriptSection> {
    let mut sections = Vec::new();
    let mut current: Option<(String, Vec<String>, String)> = None;
    let flush = |cur: Option<(String, Vec<String>, String)>, out: &mut Vec<ScriptSection>| {
        if let Some((title, paths, body)) = cur {
            out.push(ScriptSection {
                id: format!("s{}", out.len() + 1),
                title,
                paths,
                html: markdown_to_html(&body),
            });
        }
    };
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            flush(current.take(), &mut sections);
            current = Some((
                title.trim().to_string(),
                vec!["common".to_string()],
                String::new(),
            ));
        } else if let Some((_, paths, body)) = current.as_mut() {
            match line.trim().strip_prefix("paths:") {
                Some(p) if body.trim().is_empty() => {
                    *paths = p
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                _ => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    flush(current, &mut sections);
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talk_script_sections_keep_paths_and_escape_html() {
        let s = parse_talk_script("# top\n## 挨拶\npaths: common\nこんにちは **太字**\n## 更新\npaths: renewal, new\n<script>x</script>\n- 項目\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].title, "挨拶");
        assert_eq!(s[1].paths, ["renewal", "new"]);
        assert!(s[0].html.contains("<strong>太字</strong>"));
        assert!(!s[1].html.contains("<script>"));
    }
}
