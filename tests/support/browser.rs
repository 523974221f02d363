//! A scripted browser: follows redirects one by one with a cookie jar per origin, and signs
//! in at a test IdP by adding `login_hint` to its authorization requests (the IdP finishes the
//! interaction for that account). Enough to walk a consent URL the way a person would.
#![allow(dead_code)]

use std::collections::HashMap;

use super::idp::CookieJar;

pub struct Page {
    pub url: url::Url,
    pub status: u16,
    pub body: String,
    /// Every URL visited, in order.
    pub trail: Vec<url::Url>,
}

pub struct Browser {
    http: reqwest::Client,
    jars: HashMap<String, CookieJar>,
    /// (authorization endpoint URL prefix, account to sign in as)
    accounts: Vec<(String, String)>,
}

fn origin(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jars: HashMap::new(),
            accounts: vec![],
        }
    }

    /// At the IdP whose issuer is `issuer`, sign in as `account`.
    pub fn account(mut self, issuer: &str, account: &str) -> Browser {
        self.accounts
            .push((issuer.to_string(), account.to_string()));
        self
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let url = url::Url::parse(url).unwrap();
        self.jars
            .get(&origin(&url))
            .and_then(|j| j.get(name))
            .map(str::to_string)
    }

    pub fn set_cookie(&mut self, url: &str, header: &str) {
        let url = url::Url::parse(url).unwrap();
        self.jars.entry(origin(&url)).or_default().store(header);
    }

    pub async fn get(&mut self, start: &str) -> Page {
        self.request(reqwest::Method::GET, start, None, None).await
    }

    /// Follows redirects from `start` but stops before visiting a URL whose path is `path`;
    /// returns that URL (e.g. to hand a provider's callback to another browser).
    pub async fn get_until(&mut self, start: &str, path: &str) -> url::Url {
        let page = self
            .request(reqwest::Method::GET, start, None, Some(path))
            .await;
        assert_eq!(
            page.status, 0,
            "never reached {path}: {} {}",
            page.status, page.body
        );
        page.url
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request(reqwest::Method::POST, url, Some(body), None)
            .await
    }

    async fn request(
        &mut self,
        method: reqwest::Method,
        start: &str,
        form: Option<String>,
        stop_at: Option<&str>,
    ) -> Page {
        let mut url = url::Url::parse(start).unwrap();
        let mut trail = vec![];
        let mut method = method;
        let mut form = form;
        for _ in 0..40 {
            // Sign in where the IdP asks who we are.
            if let Some((_, account)) = self
                .accounts
                .iter()
                .find(|(issuer, _)| url.as_str().starts_with(issuer.as_str()))
                && url.path().ends_with("/auth")
                && !url.query_pairs().any(|(k, _)| k == "login_hint")
            {
                url.query_pairs_mut().append_pair("login_hint", account);
            }
            if stop_at.is_some_and(|path| url.path() == path) {
                return Page {
                    url,
                    status: 0,
                    body: String::new(),
                    trail,
                };
            }
            trail.push(url.clone());
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(cookie) = self.jars.get(&origin(&url)).and_then(CookieJar::header) {
                request = request.header("cookie", cookie);
            }
            if let Some(body) = form.take() {
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
            }
            let response = request.send().await.unwrap();
            let jar = self.jars.entry(origin(&url)).or_default();
            for value in response.headers().get_all("set-cookie") {
                jar.store(value.to_str().unwrap());
            }
            let status = response.status().as_u16();
            if (300..400).contains(&status) {
                let location = response.headers()["location"].to_str().unwrap().to_string();
                url = url.join(&location).unwrap();
                method = reqwest::Method::GET;
                continue;
            }
            let body = response.text().await.unwrap();
            return Page {
                url,
                status,
                body,
                trail,
            };
        }
        panic!("too many redirects: {trail:?}");
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
