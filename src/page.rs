//! The synthetic web page `hopline serve` offers at `/page` and `hopline demo` loads: one
//! HTML document referencing N subresources whose kinds and sizes follow a real page.
//!
//! Owns the resource mix, the HTML and the resource paths. Pure: no I/O; the origin serves
//! what this describes.
//!
//! # Where the mix comes from
//!
//! The HTTP Archive Web Almanac 2024, Page Weight chapter (October 2024 crawl, median
//! desktop home page: 71 requests, 2,652 KB): images 1,054 KB over 18 requests, JavaScript
//! 613 KB over 24, fonts 131 KB, CSS 78 KB, HTML 18 KB. The chapter does not give request
//! counts for fonts and CSS; we assume 3 and 7. So, per request on average: a script
//! 25.5 KB, an image 58.6 KB, a stylesheet 11.1 KB, a font 43.7 KB, in the proportions
//! 24 : 18 : 7 : 3. Within a kind, sizes spread around the average by fixed factors
//! (0.2× to 2.4×, mean 1) so a page has both small and large files, as real ones do. The
//! remaining ~19 requests of the median page (XHR, JSON, media, beacons) are left out.
//! The document itself is padded to the median 18 KB.

use std::fmt::Write as _;

/// Size of the HTML document (the median, see the module docs).
pub const HTML_BYTES: usize = 18 * 1024;

/// Resources on the page when none is asked for: the demo's default, a third of the
/// median page so that the slowest connection type still loads it in seconds at 100 ms.
pub const DEFAULT_RESOURCES: usize = 24;

/// Most resources a page may have.
pub const MAX_RESOURCES: usize = 1000;

/// Largest size one resource may be given.
pub const MAX_RESOURCE_BYTES: u64 = 64 * 1024 * 1024;

/// Spread of sizes within a kind: factors with mean 1, cycled.
const SPREAD: [f64; 6] = [0.2, 0.4, 0.7, 1.0, 1.3, 2.4];

/// What a subresource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<link rel=stylesheet>`.
    Stylesheet,
    /// `@font-face` (preloaded with `<link rel=preload as=font>`).
    Font,
    /// `<script src>`.
    Script,
    /// `<img src>`.
    Image,
}

impl Kind {
    /// In document order: styles and fonts in the head, then scripts, then images.
    const ALL: [Kind; 4] = [Kind::Stylesheet, Kind::Font, Kind::Script, Kind::Image];

    /// Requests of this kind on the median page (Web Almanac 2024; fonts, CSS assumed).
    fn share(self) -> usize {
        match self {
            Kind::Stylesheet => 7,
            Kind::Font => 3,
            Kind::Script => 24,
            Kind::Image => 18,
        }
    }

    /// Average bytes per request of this kind on the median page.
    fn mean_bytes(self) -> f64 {
        let total_kib = match self {
            Kind::Stylesheet => 78.0,
            Kind::Font => 131.0,
            Kind::Script => 613.0,
            Kind::Image => 1054.0,
        };
        total_kib * 1024.0 / self.share() as f64
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Stylesheet => "css",
            Kind::Font => "woff2",
            Kind::Script => "js",
            Kind::Image => "jpg",
        }
    }

    /// The `Content-Type` it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Stylesheet => "text/css",
            Kind::Font => "font/woff2",
            Kind::Script => "text/javascript",
            Kind::Image => "image/jpeg",
        }
    }

    fn from_extension(extension: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.extension() == extension)
    }
}

/// One subresource of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// What it is.
    pub kind: Kind,
    /// Its body size in bytes.
    pub bytes: u64,
    /// Its path on the origin: `/page/r/<bytes>/<name>.<ext>` (and `?delay=MS` for the
    /// slow one).
    pub path: String,
}

/// How a page is made, from the `/page` query: `resources=N`, `sizes=B1,B2,...` (bytes,
/// cycled over the resources instead of the median mix) and `slow=MS` (the first resource
/// answered that much later: a slow backend behind one resource, the head-of-line case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    /// Number of subresources.
    pub resources: usize,
    /// Explicit sizes, cycled; empty for the median mix.
    pub sizes: Vec<u64>,
    /// Milliseconds the first resource (in document order) waits before it is answered.
    pub slow_ms: Option<u64>,
}

impl Default for PageSpec {
    fn default() -> Self {
        PageSpec {
            resources: DEFAULT_RESOURCES,
            sizes: Vec::new(),
            slow_ms: None,
        }
    }
}

impl PageSpec {
    /// Parses a `/page` query string (`None`: the defaults).
    pub fn from_query(query: Option<&str>) -> Result<PageSpec, String> {
        let mut spec = PageSpec::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "resources" => {
                    spec.resources = value
                        .parse()
                        .ok()
                        .filter(|n| *n <= MAX_RESOURCES)
                        .ok_or_else(|| format!("resources: 0 to {MAX_RESOURCES}"))?;
                }
                "sizes" => {
                    spec.sizes = value
                        .split(',')
                        .map(|size| {
                            size.parse::<u64>()
                                .ok()
                                .filter(|b| *b <= MAX_RESOURCE_BYTES)
                                .ok_or_else(|| format!("sizes: bytes up to {MAX_RESOURCE_BYTES}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "slow" => {
                    let ms = value.parse::<u64>().ok().filter(|ms| *ms <= MAX_SLOW_MS);
                    spec.slow_ms = Some(ms.ok_or_else(|| format!("slow: 0 to {MAX_SLOW_MS} ms"))?);
                }
                _ => return Err(format!("unknown page parameter `{key}`")),
            }
        }
        Ok(spec)
    }

    /// The query string that asks for this page.
    pub fn query(&self) -> String {
        let mut query = format!("resources={}", self.resources);
        if !self.sizes.is_empty() {
            let sizes: Vec<String> = self.sizes.iter().map(u64::to_string).collect();
            write!(query, "&sizes={}", sizes.join(",")).expect("write to a String");
        }
        if let Some(ms) = self.slow_ms {
            write!(query, "&slow={ms}").expect("write to a String");
        }
        query
    }

    /// The subresources, in document order.
    pub fn resources(&self) -> Vec<Resource> {
        let counts = kind_counts(self.resources);
        let mut resources = Vec::with_capacity(self.resources);
        for (kind, count) in Kind::ALL.into_iter().zip(counts) {
            for i in 0..count {
                let bytes = match self.sizes.as_slice() {
                    [] => (kind.mean_bytes() * SPREAD[i % SPREAD.len()]).round() as u64,
                    sizes => sizes[resources.len() % sizes.len()],
                };
                let name = match kind {
                    Kind::Stylesheet => "style",
                    Kind::Font => "font",
                    Kind::Script => "app",
                    Kind::Image => "photo",
                };
                let mut path = format!("/page/r/{bytes}/{name}-{i}.{}", kind.extension());
                if let (true, Some(ms)) = (resources.is_empty(), self.slow_ms) {
                    write!(path, "?delay={ms}").expect("write to a String");
                }
                resources.push(Resource { kind, bytes, path });
            }
        }
        resources
    }

    /// The HTML document: references to every resource, padded to [`HTML_BYTES`].
    pub fn html(&self) -> String {
        let resources = self.resources();
        let mut head = String::new();
        let mut body = String::new();
        for resource in &resources {
            let path = &resource.path;
            match resource.kind {
                Kind::Stylesheet => {
                    writeln!(head, "<link rel=\"stylesheet\" href=\"{path}\">")
                }
                Kind::Font => writeln!(
                    head,
                    "<link rel=\"preload\" as=\"font\" crossorigin href=\"{path}\">"
                ),
                Kind::Script => writeln!(body, "<script src=\"{path}\"></script>"),
                Kind::Image => writeln!(body, "<img src=\"{path}\" alt=\"\">"),
            }
            .expect("write to a String");
        }
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>hopline synthetic page: {} resources</title>\n{head}</head>\n<body>\n\
             <h1>A page shaped like the median web page</h1>\n{body}",
            resources.len()
        );
        const FILLER: &str = "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do \
                              eiusmod tempor incididunt ut labore et dolore magna aliqua.</p>\n";
        let end = "</body>\n</html>\n";
        while html.len() + FILLER.len() + end.len() <= HTML_BYTES {
            html.push_str(FILLER);
        }
        html.push_str(end);
        html
    }
}

/// How many resources of each kind (in [`Kind::ALL`] order) a page of `n` has: the median
/// page's proportions, rounded by largest remainder.
fn kind_counts(n: usize) -> [usize; 4] {
    let total: usize = Kind::ALL.iter().map(|k| k.share()).sum();
    let mut counts = [0usize; 4];
    let mut remainders = [(0usize, 0usize); 4];
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        counts[i] = n * kind.share() / total;
        remainders[i] = (n * kind.share() % total, i);
    }
    let missing = n - counts.iter().sum::<usize>();
    remainders.sort_by(|a, b| b.cmp(a));
    for &(_, i) in remainders.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// Longest `slow=MS`.
pub const MAX_SLOW_MS: u64 = 60_000;

/// How long a resource's query asks it to wait (`delay=MS`, at most [`MAX_SLOW_MS`]).
pub fn resource_delay(query: Option<&str>) -> Option<std::time::Duration> {
    let ms = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay="))?
        .parse::<u64>()
        .ok()?;
    Some(std::time::Duration::from_millis(ms.min(MAX_SLOW_MS)))
}

/// A resource path's kind and size, if it is one: `/page/r/<bytes>/<name>.<ext>`.
pub fn parse_resource_path(path: &str) -> Option<(Kind, u64)> {
    let rest = path.strip_prefix("/page/r/")?;
    let (bytes, name) = rest.split_once('/')?;
    let bytes = bytes
        .parse::<u64>()
        .ok()
        .filter(|b| *b <= MAX_RESOURCE_BYTES)?;
    let (_, extension) = name.rsplit_once('.')?;
    Some((Kind::from_extension(extension)?, bytes))
}

/// The same-origin subresource paths an HTML document references (`src="/..."` and
/// `href="/..."`), in document order. Enough for pages like ours and simple real ones; not
/// an HTML parser (no CSS imports, no script-inserted resources).
pub fn referenced_paths(html: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            let start = at + attribute.len();
            let Some(len) = rest[start..].find('"') else {
                break;
            };
            let value = &rest[start..start + len];
            if value.starts_with('/') && !value.starts_with("//") {
                paths.push((at + (html.len() - rest.len()), value.to_string()));
            }
            rest = &rest[start + len..];
        }
    }
    paths.sort();
    paths.into_iter().map(|(_, path)| path).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_median_page() {
        let page = PageSpec {
            resources: 52,
            ..PageSpec::default()
        };
        let resources = page.resources();
        let count = |kind| resources.iter().filter(|r| r.kind == kind).count();
        assert_eq!(
            [
                count(Kind::Stylesheet),
                count(Kind::Font),
                count(Kind::Script),
                count(Kind::Image)
            ],
            [7, 3, 24, 18]
        );
        let bytes = |kind| -> u64 {
            resources
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.bytes)
                .sum()
        };
        // The spread's mean is 1 over whole cycles: totals land near the Almanac's.
        let kib = |b: u64| b as f64 / 1024.0;
        assert!((kib(bytes(Kind::Script)) - 613.0).abs() < 613.0 * 0.05);
        assert!((kib(bytes(Kind::Image)) - 1054.0).abs() < 1054.0 * 0.05);
    }

    #[test]
    fn counts_add_up_for_every_size() {
        for n in 0..=200 {
            assert_eq!(kind_counts(n).iter().sum::<usize>(), n);
            assert_eq!(
                PageSpec {
                    resources: n,
                    ..PageSpec::default()
                }
                .resources()
                .len(),
                n
            );
        }
    }

    #[test]
    fn the_html_references_every_resource_in_order_and_has_the_median_size() {
        let page = PageSpec::default();
        let html = page.html();
        assert!(html.len() <= HTML_BYTES && html.len() > HTML_BYTES - 200);
        let expected: Vec<String> = page.resources().into_iter().map(|r| r.path).collect();
        assert_eq!(referenced_paths(&html), expected);
        for path in &expected {
            assert!(parse_resource_path(path).is_some(), "{path}");
        }
    }

    #[test]
    fn queries_round_trip_and_bad_ones_are_refused() {
        let page = PageSpec {
            resources: 10,
            sizes: vec![1000, 20_000],
            slow_ms: Some(250),
        };
        assert_eq!(PageSpec::from_query(Some(&page.query())).unwrap(), page);
        // Only the first resource is slow, and says so in its query.
        let paths: Vec<String> = page.resources().into_iter().map(|r| r.path).collect();
        assert!(paths[0].ends_with("?delay=250"), "{}", paths[0]);
        assert!(paths[1..].iter().all(|p| !p.contains('?')));
        assert_eq!(
            resource_delay(Some("delay=250")),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(resource_delay(Some("x=1")), None);
        assert!(PageSpec::from_query(Some("slow=99999999")).is_err());
        assert_eq!(
            page.resources().iter().map(|r| r.bytes).collect::<Vec<_>>(),
            [1000, 20_000].repeat(5)
        );
        assert_eq!(PageSpec::from_query(None).unwrap(), PageSpec::default());
        assert!(PageSpec::from_query(Some("resources=x")).is_err());
        assert!(PageSpec::from_query(Some("resources=100000")).is_err());
        assert!(PageSpec::from_query(Some("sizes=1,x")).is_err());
        assert!(PageSpec::from_query(Some("color=blue")).is_err());
    }

    #[test]
    fn resource_paths_parse_strictly() {
        assert_eq!(
            parse_resource_path("/page/r/123/app-1.js"),
            Some((Kind::Script, 123))
        );
        assert_eq!(parse_resource_path("/page/r/123/app-1.exe"), None);
        assert_eq!(parse_resource_path("/page/r/abc/app.js"), None);
        assert_eq!(parse_resource_path("/page/r/999999999999/a.js"), None);
        assert_eq!(parse_resource_path("/bytes/10"), None);
    }
}
