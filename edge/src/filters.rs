//! Built-in filters implementing the config directives.

use http::header::{HeaderName, HeaderValue, LOCATION};
use http::StatusCode;

use crate::body;
use crate::filter::{Ctx, Filter, Flow};
use crate::session::Session;
use crate::variables::Template;

/// `return CODE [BODY]`: answers in the request phase. For 301, 302, 303, 307 and 308
/// the text is the redirect URL (sent as `Location`), as nginx does. Variables in the
/// text are expanded.
pub struct Return {
    pub status: StatusCode,
    pub text: Option<Template>,
}

#[async_trait::async_trait]
impl Filter for Return {
    fn name(&self) -> &str {
        "return"
    }

    async fn request(&self, session: &mut Session, _ctx: &mut Ctx) -> Flow {
        let redirect = matches!(self.status.as_u16(), 301 | 302 | 303 | 307 | 308);
        let mut resp = http::Response::new(body::empty());
        *resp.status_mut() = self.status;
        let text = self.text.as_ref().map(|t| t.expand(session, None));
        match (text, redirect) {
            (Some(url), true) => {
                if let Ok(v) = HeaderValue::from_maybe_shared(url) {
                    resp.headers_mut().insert(LOCATION, v);
                }
            }
            (Some(text), false) => *resp.body_mut() = body::full(text),
            (None, _) => {}
        }
        Flow::Respond(resp)
    }
}

/// `add_header NAME VALUE [always=#true]`: adds a response header on success and
/// redirect statuses, or on every status with `always`, as nginx does. Variables in the
/// value are expanded; an empty value adds nothing.
pub struct AddHeader {
    pub name: HeaderName,
    pub value: Template,
    pub always: bool,
}

#[async_trait::async_trait]
impl Filter for AddHeader {
    fn name(&self) -> &str {
        "add_header"
    }

    async fn response(
        &self,
        session: &Session,
        response: &mut http::response::Parts,
        _ctx: &mut Ctx,
    ) -> Flow {
        let applies = self.always
            || matches!(
                response.status.as_u16(),
                200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
            );
        if !applies {
            return Flow::Continue;
        }
        match HeaderValue::from_maybe_shared(self.value.expand(session, None)) {
            Ok(v) if !v.is_empty() => {
                response.headers.append(self.name.clone(), v);
            }
            _ => {}
        }
        Flow::Continue
    }
}
