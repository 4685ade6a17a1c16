//! The PNG chart of a run: four panels of horizontal bars (round trips,
//! streaming, fan-out, memory), vigie's bars next to the baselines of the
//! same run. Drawn with plotters into a memory buffer and encoded with the
//! png crate; the fonts are the DejaVu files the desktop client embeds, so
//! no system font library is needed.

use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::{
        FontStyle,
        text_anchor::{HPos, Pos, VPos},
    },
};

use crate::report::{Report, number};

/// Who a bar stands for, which sets its colour.
#[derive(Clone, Copy)]
enum Kind {
    Floor,
    Vigie,
    OpenSsh,
}

impl Kind {
    fn color(self) -> RGBColor {
        match self {
            Kind::Floor => RGBColor(150, 150, 150),
            Kind::Vigie => RGBColor(31, 111, 235),
            Kind::OpenSsh => RGBColor(230, 126, 34),
        }
    }
}

struct Panel {
    title: &'static str,
    log: bool,
    /// Figure key, label, kind. Bars whose figure is missing are left out.
    bars: &'static [(&'static str, &'static str, Kind)],
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "Round trip of `true` (ms, log scale; lower is better)",
        log: true,
        bars: &[
            ("spawn", "local sh -c true", Kind::Floor),
            ("warm_true", "vigie, warm channel", Kind::Vigie),
            ("warm_true_tls", "vigie, warm, mTLS", Kind::Vigie),
            ("ssh_mux", "ssh, ControlMaster", Kind::OpenSsh),
            ("cli_cold", "vigie CLI, cold", Kind::Vigie),
            ("cli_cold_tls", "vigie CLI, cold, mTLS", Kind::Vigie),
            ("ssh_cold", "ssh, cold", Kind::OpenSsh),
        ],
    },
    Panel {
        title: "Streaming stdout (MB/s; higher is better)",
        log: false,
        bars: &[
            ("pipe", "local pipe", Kind::Floor),
            ("stream", "vigie, plaintext", Kind::Vigie),
            ("stream_tls", "vigie, mTLS", Kind::Vigie),
            ("ssh_stream", "ssh, default cipher", Kind::OpenSsh),
            ("ssh_stream_aes", "ssh, aes128-gcm", Kind::OpenSsh),
        ],
    },
    Panel {
        title: "Fan-out of `true` (ms, log scale; lower is better)",
        log: true,
        bars: &[
            ("fanout_cold_10", "vigie, 10 agents", Kind::Vigie),
            ("ssh_fanout_10", "ssh, 10 sessions", Kind::OpenSsh),
            ("fanout_cold_100", "vigie, 100 agents", Kind::Vigie),
            ("fanout_cli_100", "vigie CLI, 100 agents", Kind::Vigie),
            ("ssh_fanout_100", "ssh, 100 sessions", Kind::OpenSsh),
            ("fanout_cold_1000", "vigie, 1000 agents", Kind::Vigie),
            ("fanout_cli_1000", "vigie CLI, 1000 agents", Kind::Vigie),
        ],
    },
    Panel {
        title: "Resident memory (MiB; lower is better)",
        log: false,
        bars: &[
            ("rss_idle", "agent, idle", Kind::Vigie),
            ("rss_streams", "agent, 100 streams", Kind::Vigie),
            ("rss_commands", "agent, after 10,000 cmds", Kind::Vigie),
            ("sshd_rss", "sshd listener, idle", Kind::OpenSsh),
        ],
    },
];

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;

/// Renders the chart as PNG bytes.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    register_fonts()?;
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = format!(
            "vigie benchmark suite{}: {}, {} CPUs, {}",
            if report.smoke { " (smoke)" } else { "" },
            report.machine.cpu,
            report.machine.cpus,
            report.date
        );
        let root = root
            .titled(
                &title,
                ("sans-serif", 22).into_font().style(FontStyle::Bold),
            )
            .map_err(|e| e.to_string())?;
        let legend_height = 30;
        let (legend, panels) = root.split_vertically(legend_height);
        draw_legend(&legend)?;
        for (area, panel) in panels.split_evenly((2, 2)).iter().zip(PANELS.iter()) {
            draw_panel(area, panel, report)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    encode_png(&pixels)
}

fn register_fonts() -> Result<(), String> {
    let fonts: [(FontStyle, &'static [u8]); 2] = [
        (
            FontStyle::Normal,
            include_bytes!("../../ui/fonts/DejaVuSans.ttf"),
        ),
        (
            FontStyle::Bold,
            include_bytes!("../../ui/fonts/DejaVuSans-Bold.ttf"),
        ),
    ];
    for (style, bytes) in fonts {
        plotters::style::register_font("sans-serif", style, bytes)
            .map_err(|_| "the embedded DejaVu font does not load".to_owned())?;
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String> {
    let style = ("sans-serif", 16).into_font();
    let mut x = 40;
    for (label, kind) in [
        ("machine floor", Kind::Floor),
        ("vigie", Kind::Vigie),
        ("OpenSSH (private sshd on 127.0.0.1)", Kind::OpenSsh),
    ] {
        area.draw(&Rectangle::new(
            [(x, 8), (x + 18, 24)],
            kind.color().filled(),
        ))
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(label, (x + 26, 8), style.clone()))
            .map_err(|e| e.to_string())?;
        x += 60 + 9 * label.len() as i32;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    report: &Report,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let bars: Vec<(&str, f64, Kind)> = panel
        .bars
        .iter()
        .filter_map(|(key, label, kind)| {
            let value = report.get(key)?;
            // Memory is reported in KiB, drawn in MiB.
            let value = if panel.title.starts_with("Resident") {
                value / 1024.0
            } else {
                value
            };
            (value > 0.0).then_some((*label, value, *kind))
        })
        .collect();
    if bars.is_empty() {
        area.draw(&Text::new(
            format!("{}: not measured in this run", panel.title),
            (20, 40),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(err)?;
        return Ok(());
    }
    // A log axis is a linear axis of log10(value) with labels put back.
    let scale = |v: f64| if panel.log { v.log10() } else { v };
    let (low, high) = if panel.log {
        let min = bars.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
        let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
        // Half a decade below the smallest bar, so that no bar is empty.
        ((min.log10() - 0.5).floor(), max.log10().ceil() + 0.5)
    } else {
        let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
        (0.0, max * 1.3)
    };
    let labels: Vec<&str> = bars.iter().map(|b| b.0).collect();
    let log = panel.log;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(200)
        .build_cartesian_2d(low..high, (0..bars.len() - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels
                .len()
                .checked_sub(i + 1)
                .and_then(|row| labels.get(row))
                .map_or(String::new(), |l| l.to_string()),
            _ => String::new(),
        })
        .x_label_formatter(&|v| {
            if log {
                let value = 10f64.powf(*v);
                if (value.log10() - value.log10().round()).abs() < 1e-9 {
                    number(value)
                } else {
                    String::new()
                }
            } else {
                number(*v)
            }
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let value_style = ("sans-serif", 14)
        .into_font()
        .into_text_style(area)
        .pos(Pos::new(HPos::Left, VPos::Center));
    // The first bar of a panel goes at the top.
    for (row, (_, value, kind)) in bars.iter().enumerate() {
        let i = bars.len() - 1 - row;
        let mut bar = Rectangle::new(
            [
                (low, SegmentValue::Exact(i)),
                (scale(*value), SegmentValue::Exact(i + 1)),
            ],
            kind.color().filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {}", number(*value)),
                (scale(*value), SegmentValue::CenterOf(i)),
                value_style.clone(),
            )))
            .map_err(err)?;
    }
    Ok(())
}

fn encode_png(pixels: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}
