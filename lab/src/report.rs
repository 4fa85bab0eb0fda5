//! A run's report: the history and figures as files, a Markdown summary,
//! and a self-contained HTML page with the charts. `lab report` makes it
//! again from a run's folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ringdb_sim::history::{Event, History};

use crate::LabError;
use crate::charts;
use crate::experiment::RunInfo;
use crate::measure::{Figures, Staleness, Tally, figures};

/// The history file in a run's folder.
pub const HISTORY_FILE: &str = "history.jsonl";
/// What the run was.
pub const INFO_FILE: &str = "run.json";

/// A table, rendered as Markdown or HTML.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn markdown(&self) -> String {
        let mut text = format!("| {} |\n", self.header.join(" | "));
        let _ = writeln!(text, "|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }

    fn html(&self) -> String {
        let mut text = String::from("<table><tr>");
        for h in &self.header {
            let _ = write!(text, "<th>{}</th>", escape(h));
        }
        text.push_str("</tr>");
        for row in &self.rows {
            text.push_str("<tr>");
            for cell in row {
                let _ = write!(text, "<td>{}</td>", escape(cell));
            }
            text.push_str("</tr>");
        }
        text.push_str("</table>\n");
        text
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tally(t: &Tally) -> String {
    format!("{} / {}", t.ok, t.failed)
}

fn stale(s: &Staleness) -> String {
    match s.percent() {
        Some(percent) => format!("{} of {} ({percent:.1}%)", s.stale, s.reads),
        None => "no reads".into(),
    }
}

fn errors(errors: &std::collections::BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report's sections: a title, paragraphs and tables.
struct Sections {
    title: String,
    parts: Vec<(String, Vec<String>, Option<Table>)>,
}

fn sections(f: &Figures) -> Sections {
    let mut parts = Vec::new();
    let faults: Vec<String> = f
        .windows
        .iter()
        .map(|w| {
            format!(
                "{} from {:.1} s to {:.1} s",
                w.what,
                w.start_ms as f64 / 1000.0,
                w.end_ms as f64 / 1000.0
            )
        })
        .collect();
    let per_datacenter = |datacenters: &std::collections::BTreeMap<String, usize>| {
        if datacenters.len() < 2 {
            return String::new();
        }
        let each: Vec<String> = datacenters
            .iter()
            .map(|(dc, n)| format!("{dc}: {n}"))
            .collect();
        format!(" ({})", each.join(", "))
    };
    parts.push((
        "The run".into(),
        vec![
            format!("{}.", f.description),
            format!(
                "{} nodes ({}), {} replicas of each row{}; started {}, seed {}, {:.1} s of operations.",
                f.nodes.len(),
                f.nodes.join(", "),
                f.replicas,
                per_datacenter(&f.datacenters),
                f.started,
                f.seed,
                f.duration_ms as f64 / 1000.0
            ),
            format!(
                "Faults: {}.",
                if faults.is_empty() { "none".into() } else { faults.join("; ") }
            ),
        ],
        None,
    ));
    let c = &f.checks;
    let mut promises = Table::new(&[
        "acknowledged writes",
        "lost",
        "never written (phantoms)",
        "resurrected",
        "dots reused",
        "stale reads where R + W > N",
        "reads going back",
    ]);
    promises.rows.push(vec![
        c.acknowledged_writes.to_string(),
        c.lost_writes.to_string(),
        c.phantoms.to_string(),
        c.resurrections.to_string(),
        c.dots_reused.to_string(),
        c.strict_stale_reads.to_string(),
        c.non_monotonic_reads.to_string(),
    ]);
    let mut said = vec![if c.passed() {
        "Every promise held: each count below must be 0, and is.".to_string()
    } else {
        "PROMISES BROKEN: the counts below must all be 0.".to_string()
    }];
    said.extend(c.violations.iter().map(|v| format!("- {v}")));
    parts.push(("Promises".into(), said, Some(promises)));
    let mut levels = Table::new(&[
        "level",
        "writes ok / failed",
        "reads ok / failed",
        "stale reads during the faults",
        "stale reads outside them",
        "write ms p50 / p99",
        "read ms p50 / p99",
        "failures",
    ]);
    for l in &f.levels {
        levels.rows.push(vec![
            l.level.clone(),
            tally(&l.writes),
            tally(&l.reads),
            stale(&l.during_faults),
            stale(&l.outside_faults),
            format!(
                "{:.0} / {:.0}",
                l.write_latency_ms[0], l.write_latency_ms[1]
            ),
            format!("{:.0} / {:.0}", l.read_latency_ms[0], l.read_latency_ms[1]),
            errors(&l.errors),
        ]);
    }
    parts.push((
        "Per consistency level".into(),
        vec![
            "A read is stale when it misses a write acknowledged before it began (that no later write \
             superseded)."
                .into(),
        ],
        Some(levels),
    ));
    if !f.windows.is_empty() {
        let mut sides = Table::new(&[
            "level",
            "clients of",
            "writes ok / failed",
            "reads ok / failed",
            "stale reads",
            "failures",
        ]);
        for l in &f.levels {
            for s in &l.sides {
                sides.rows.push(vec![
                    l.level.clone(),
                    s.nodes.join(","),
                    tally(&s.writes),
                    tally(&s.reads),
                    stale(&s.staleness),
                    errors(&s.errors),
                ]);
            }
        }
        parts.push((
            "While the faults lasted, per side".into(),
            vec!["Each client asks one node; a side is the nodes its clients asked.".into()],
            Some(sides),
        ));
    }
    parts.push(("Convergence".into(), convergence(f), None));
    Sections {
        title: format!("ringdb lab: {}", f.experiment),
        parts,
    }
}

fn convergence(f: &Figures) -> Vec<String> {
    let c = &f.convergence;
    let mut said = vec![format!(
        "Rows written before the last fault ended ({:.1} s): {}; of those, {} differed between replicas when first compared.",
        c.healed_ms as f64 / 1000.0,
        c.rows,
        c.rows_differing
    )];
    said.push(match c.converged_after_ms {
        Some(after) => format!(
            "Every replica of every one of them agreed {:.1} s after the last fault ended, with no repair \
             (hinted handoff, read repair and background anti-entropy).",
            after as f64 / 1000.0
        ),
        None => "They did not all agree by themselves within the limit.".into(),
    });
    if let Some(repair) = &c.repair {
        said.push(format!("The lab repaired every node: {repair}."));
    }
    if c.rows_diverged.is_empty() {
        said.push("At the end, the replicas of every row written agreed.".into());
    } else {
        said.push(format!(
            "At the end, {} rows still differed between replicas: {}.",
            c.rows_diverged.len(),
            c.rows_diverged
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    said
}

/// The Markdown summary.
pub fn markdown(f: &Figures) -> String {
    let sections = sections(f);
    let mut text = format!("# {}\n", sections.title);
    for (title, paragraphs, table) in &sections.parts {
        let _ = write!(text, "\n## {title}\n\n");
        for p in paragraphs {
            let _ = writeln!(text, "{p}");
        }
        if let Some(table) = table {
            let _ = write!(text, "\n{}", table.markdown());
        }
    }
    text
}

/// The charts, by file name.
fn draw_charts(f: &Figures) -> Result<Vec<(&'static str, String)>, LabError> {
    Ok(vec![
        ("throughput.svg", charts::throughput(f)?),
        ("latency.svg", charts::latency(f)?),
        ("stale-reads.svg", charts::staleness(f)?),
        ("availability.svg", charts::availability(f)?),
    ])
}

/// The HTML page, with the charts inline.
fn html(f: &Figures, charts: &[(&'static str, String)]) -> String {
    let sections = sections(f);
    let mut page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 960px; margin: 2em auto; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}\n\
         th {{ background: #f3f3f3; }}\n</style></head><body>\n<h1>{title}</h1>\n",
        title = escape(&sections.title)
    );
    for (title, paragraphs, table) in &sections.parts {
        let _ = writeln!(page, "<h2>{}</h2>", escape(title));
        for p in paragraphs {
            let _ = writeln!(page, "<p>{}</p>", escape(p));
        }
        if let Some(table) = table {
            page.push_str(&table.html());
        }
    }
    page.push_str("<h2>Charts</h2>\n");
    for (_, svg) in charts {
        let _ = writeln!(page, "<div>{svg}</div>");
    }
    page.push_str("</body></html>\n");
    page
}

/// Writes a run into `folder`: its history, what it was, the figures,
/// the summary, the charts and the page. Returns the figures.
pub fn write(folder: &Path, history: &History, info: &RunInfo) -> Result<Figures, LabError> {
    std::fs::create_dir_all(folder)
        .map_err(LabError::io(format!("cannot create {}", folder.display())))?;
    let save = |name: &str, text: &str| {
        let path = folder.join(name);
        std::fs::write(&path, text)
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    };
    save(HISTORY_FILE, &history.to_text())?;
    save(
        INFO_FILE,
        &serde_json::to_string_pretty(info).expect("run info serializes"),
    )?;
    render(folder, history, info)
}

/// Makes the report files in `folder` from a history and its run.
fn render(folder: &Path, history: &History, info: &RunInfo) -> Result<Figures, LabError> {
    let save = |name: &str, text: &str| {
        let path = folder.join(name);
        std::fs::write(&path, text)
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    };
    let figures = figures(history, info);
    save(
        "figures.json",
        &serde_json::to_string_pretty(&figures).expect("figures serialize"),
    )?;
    save("summary.md", &markdown(&figures))?;
    let charts = draw_charts(&figures)?;
    for (name, svg) in &charts {
        save(name, svg)?;
    }
    save("report.html", &html(&figures, &charts))?;
    Ok(figures)
}

/// Makes the report of the run in `folder` again (its `history.jsonl`
/// and `run.json`, or a history file with `run.json` beside it).
pub fn rebuild(path: &Path) -> Result<(Figures, PathBuf), LabError> {
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let history_path = if path.is_dir() {
        folder.join(HISTORY_FILE)
    } else {
        path.to_path_buf()
    };
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(LabError::io(format!("cannot read {}", path.display())))
    };
    let mut history = History::default();
    for (n, line) in read(&history_path)?.lines().enumerate() {
        let event: Event = serde_json::from_str(line).map_err(|source| LabError::Format {
            what: format!("{} line {}", history_path.display(), n + 1),
            source,
        })?;
        history.events.push(event);
    }
    let info_path = folder.join(INFO_FILE);
    let info: RunInfo =
        serde_json::from_str(&read(&info_path)?).map_err(|source| LabError::Format {
            what: info_path.display().to_string(),
            source,
        })?;
    let figures = render(&folder, &history, &info)?;
    Ok((figures, folder.join("report.html")))
}
