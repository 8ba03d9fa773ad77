//! Building responses: a representation under Range/If-Range and the fault plan, the preflight
//! answer, and the small fixed responses (status faults, redirects, text).

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{CloseFlag, Cut, OutageClock, ResponseBody, Source, StreamPlan, FRAME};
use super::faults::{FaultPlan, Redirect};
use super::ranges::{self, if_range_matches, parse_range, RangeAsk};

/// Preflight answer when the request names no headers.
const DEFAULT_ALLOWED_HEADERS: &str =
    "Range, If-Range, Authorization, Content-Type, X-Requested-With";

/// A representation the server can send whole or in part.
pub(super) struct Representation {
    /// Where the bytes come from.
    pub source: Source,
    /// Full length in bytes.
    pub len: u64,
    /// The ETag without quotes and version, e.g. `g-100-7`.
    pub etag_base: String,
    /// Sent as `Last-Modified` (to the second) and compared with a date in `If-Range`.
    pub last_modified: SystemTime,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Whether to send `Cache-Control: no-store`.
    pub no_store: bool,
}

/// Applies the fault plan, `Range` and `If-Range` to a representation and starts its body.
/// `nth` is the 1-based count of requests of this exact URL (for `times` and `etag-change`),
/// `origin` this server's origin (for same-origin redirects), `close` the connection's close flag,
/// `outage` the clock a `fault=outage` cut starts.
pub(super) fn serve(
    req: &Request<Incoming>,
    plan: FaultPlan,
    nth: u64,
    origin: &str,
    rep: Representation,
    close: CloseFlag,
    outage: Option<Arc<OutageClock>>,
) -> Response<ResponseBody> {
    let plan = plan.for_request(nth);

    if let Some(token) = &plan.auth {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {token}").as_str()) {
            let mut response = text(StatusCode::UNAUTHORIZED, "auth: send the bearer token\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cdn\""),
            );
            return response;
        }
    }
    if let Some(code) = plan.status {
        return status_fault(code, plan.retry_after);
    }
    match &plan.redirect {
        Some(Redirect::SameOrigin(path)) => {
            return redirect(StatusCode::FOUND, &format!("{origin}{path}"))
        }
        Some(Redirect::OtherOrigin(url)) => return redirect(StatusCode::FOUND, url),
        None => {}
    }

    let version = if plan.etag_change { nth - 1 } else { 0 };
    let etag = format!("\"{}-v{version}\"", rep.etag_base);
    let last_modified = ranges::truncate_to_seconds(rep.last_modified);
    let header_text = |name: HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ask = if plan.no_range {
        RangeAsk::Whole
    } else {
        let honour = header_text(header::IF_RANGE)
            .map(|value| if_range_matches(value, &etag, last_modified))
            .unwrap_or(true);
        if honour {
            parse_range(header_text(header::RANGE), rep.len)
        } else {
            RangeAsk::Whole
        }
    };

    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, rep.content_type);
    if !plan.no_validator {
        builder = builder.header(header::ETAG, &etag).header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(last_modified),
        );
    }
    if rep.no_store {
        builder = builder.header(header::CACHE_CONTROL, "no-store");
    }
    let (status, start, length) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, rep.len),
        RangeAsk::Part { start, end } => {
            let shift = if plan.bad_content_range { FRAME } else { 0 };
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", start + shift, end + shift, rep.len),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAsk::Unsatisfiable => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes */{}", rep.len));
            (StatusCode::RANGE_NOT_SATISFIABLE, 0, 0)
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, length);

    let body = if req.method() == Method::HEAD || length == 0 {
        ResponseBody::empty()
    } else {
        let cuts = [
            plan.drop_after.map(|after| Cut::Close { after }),
            plan.outage_after.map(|after| Cut::Close { after }),
            plan.short_by.map(|by| Cut::Close {
                after: length.saturating_sub(by),
            }),
            plan.stall_after.map(|after| Cut::Stall {
                after,
                ms: plan.stall_ms,
            }),
        ];
        let cut = cuts
            .into_iter()
            .flatten()
            .filter(|cut| cut_point(cut) < length)
            .min_by_key(cut_point);
        ResponseBody::stream(
            StreamPlan {
                source: rep.source,
                start,
                length,
                cut,
                throttle: plan.throttle,
                outage: outage.filter(|_| plan.outage_after.is_some()),
            },
            close,
        )
    };
    builder
        .body(body)
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "bad response head\n"))
}

fn cut_point(cut: &Cut) -> u64 {
    match *cut {
        Cut::Close { after } | Cut::Stall { after, .. } => after,
    }
}

pub(super) fn status_fault(code: u16, retry_after: Option<u64>) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = status;
        response
    } else {
        text(status, &format!("fault: status {code}\n"))
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

pub(super) fn redirect(status: StatusCode, location: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    match HeaderValue::try_from(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            response
        }
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "redirect target is not a valid header value\n",
        ),
    }
}

/// A small `text/plain` response.
pub(super) fn text(status: StatusCode, body: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body.to_owned()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

/// The answer to `OPTIONS`; control paths also allow `POST` (for `/_control/reset`).
pub(super) fn preflight(headers: &HeaderMap, control: bool) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(if control {
            "GET, HEAD, OPTIONS, POST"
        } else {
            "GET, HEAD, OPTIONS"
        }),
    );
    let allowed = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS));
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed);
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    if headers.contains_key(header::ORIGIN)
        && headers.contains_key("access-control-request-private-network")
    {
        out.insert(
            HeaderName::from_static("access-control-allow-private-network"),
            HeaderValue::from_static("true"),
        );
    }
    response
}
