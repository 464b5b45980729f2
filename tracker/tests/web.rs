//! The web app in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver against a real tracker on 127.0.0.1:0, with a
//! small network of nodes reporting through the real API so the admin pages have bytes to
//! show. Every page visited is saved as a PNG under `target/test-artifacts/web/`.

mod web_support;

use std::time::Duration;

use rivulet_tracker::web::{CSRF_FIELD, FORM_COOKIE, SESSION_COOKIE};
use rivulet_tracker_client::{Heartbeat, NodeRegistration};
use web_support::{Browser, PASSWORD, Tracker, cache_at, eventually, moved, peer_bytes, receipts};

/// Each test's own time limit: a hung browser fails the test instead of the suite.
const TEST_LIMIT: Duration = Duration::from_secs(180);

async fn within_limit(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test finishes within its time limit");
}

/// A client that keeps redirects visible.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden CSRF field in a page's HTML.
fn csrf_in(html: &str) -> String {
    let marker = format!("name=\"{CSRF_FIELD}\" value=\"");
    let start = html.find(&marker).expect("the page has a CSRF field") + marker.len();
    html[start..start + 64].to_owned()
}

/// `name=value` of a `Set-Cookie` header of `resp`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_up_see_their_dashboard_and_are_kept_out_of_admin_pages() {
    within_limit(async {
        let t = Tracker::start(&[("m", "Movie M", 10)]).await;
        let b = Browser::start(&t).await;

        b.open("/").await;
        b.wait_text("h1", "Movies streamed by the people watching them")
            .await;
        b.screenshot("landing").await;
        b.click("a[href='/about']").await;
        b.wait_text("h1", "About Rivulet").await;
        b.screenshot("about").await;

        // Sign-up: mistakes are said next to their field, the username is kept.
        b.open("/signup").await;
        b.screenshot("signup").await;
        b.fill("#username", "x").await;
        b.fill("#password", "short").await;
        b.click("#submit").await;
        assert!(
            b.text("#username-error")
                .await
                .starts_with("Username must be 3–32"),
            "username error"
        );
        assert!(
            b.text("#password-error")
                .await
                .starts_with("Password must be 8–256")
        );
        b.fill("#username", "carl").await;
        b.fill("#password", "carl-and-42").await;
        b.fill("#confirm", "carl-and-42").await;
        b.click("#submit").await;
        b.wait_text("#password-error", "Password must not contain the username.")
            .await;
        assert_eq!(b.attr("#username", "value").await.as_deref(), Some("carl"));
        b.fill("#password", PASSWORD).await;
        b.fill("#confirm", "something-else-1").await;
        b.click("#submit").await;
        b.wait_text("#confirm-error", "The two passwords differ.")
            .await;
        b.screenshot("signup-errors").await;
        b.fill("#password", PASSWORD).await;
        b.fill("#confirm", PASSWORD).await;
        b.click("#submit").await;

        // Signed up and logged in: the dashboard of a new account.
        b.wait_text("h1", "Hello, carl").await;
        assert_eq!(b.path().await, "/dashboard");
        b.wait_text("#points", "100").await;
        b.find("#no-nodes").await;

        // The same account runs a cache and a viewer through the API; vera watches from it.
        let carl = t.user("carl").await;
        let vera = t.user("vera").await;
        carl.buy("m").await.unwrap();
        vera.buy("m").await.unwrap();
        let cache = carl.register_node(&cache_at(4001)).await.unwrap().node_id;
        let mine = carl
            .register_node(&NodeRegistration::viewer())
            .await
            .unwrap()
            .node_id;
        let theirs = vera
            .register_node(&NodeRegistration::viewer())
            .await
            .unwrap()
            .node_id;
        let c = t.chunk_len("m").await;
        t.wait_placed(&carl, &cache, "m").await;
        carl.heartbeat(
            &cache,
            &Heartbeat {
                holdings: vec![rivulet_tracker_client::Holding {
                    video: "m".into(),
                    indices: vec![3, 4, 5],
                }],
                ..moved(
                    vec![peer_bytes(&theirs, "m", 3 * c)],
                    vec![peer_bytes("origin", "m", 6000)],
                )
            },
        )
        .await
        .unwrap();
        vera.heartbeat(
            &theirs,
            &Heartbeat {
                watching: Some("m".into()),
                ..moved(vec![], vec![receipts(&cache, "m", 0..3, c)])
            },
        )
        .await
        .unwrap();
        carl.heartbeat(
            &mine,
            &Heartbeat {
                watching: Some("m".into()),
                ..moved(vec![], vec![peer_bytes("origin", "m", 500)])
            },
        )
        .await
        .unwrap();

        // 100 to start, 10 for the movie, a point per 1000 bytes of the three chunks vera's
        // receipts confirmed.
        b.client.refresh().await.unwrap();
        b.wait_text("#points", &(90 + 3 * c / 1000).to_string())
            .await;
        let three = (3 * c).to_string();
        assert_eq!(
            b.attr("#uploaded data", "value").await.as_deref(),
            Some(three.as_str())
        );
        b.wait_text("#uploaded", &rivulet_node_core::units::format_bytes(3 * c))
            .await;
        assert_eq!(
            b.attr("#credited data", "value").await.as_deref(),
            Some(three.as_str())
        );
        let rows = b.all("#my-nodes tbody tr").await;
        assert_eq!(rows.len(), 2);
        let cache_row = b.text(&format!("tr[data-node='{cache}']")).await;
        assert!(cache_row.contains("cache4001.example:4001"), "{cache_row}");
        assert!(cache_row.contains("m: 3 chunks"), "{cache_row}");
        assert!(
            b.text(&format!("tr[data-node='{mine}']"))
                .await
                .contains("viewer")
        );
        b.wait_text(&format!("tr[data-node='{mine}'] td.watching"), "Movie M")
            .await;
        b.wait_text("#bought li[data-video='m']", "Movie M").await;
        b.wait_text("#watched li[data-video='m']", "Movie M").await;
        b.screenshot("dashboard").await;

        // Not an administrator: every admin page is a 403 page.
        for path in [
            "/admin",
            "/admin/nodes",
            "/admin/videos",
            "/admin/accounts",
            &format!("/admin/flows/{cache}"),
        ] {
            b.open(path).await;
            b.wait_text("h1", "Administrators only").await;
        }
        b.screenshot("forbidden").await;
        let cookie = format!("{SESSION_COOKIE}={}", b.session_cookie().await);
        for path in ["/admin", "/admin/nodes", "/admin/load.json"] {
            let resp = http()
                .get(t.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 403, "{path}");
        }
        // No admin link for them either.
        b.open("/dashboard").await;
        assert!(b.all("header a[href='/admin']").await.is_empty());

        // Log out: the session ends on the server too.
        b.click("#logout").await;
        b.wait_text("h1", "Movies streamed by the people watching them")
            .await;
        b.find("header a[href='/login']").await;
        let resp = http()
            .get(t.url("/dashboard"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            303,
            "the old cookie no longer works"
        );
        b.open("/dashboard").await;
        b.wait_text("h1", "Log in").await;
        assert!(b.path().await.starts_with("/login"));

        // Log-in: a wrong password is said plainly, the right one lands on the page asked for.
        b.fill("#username", "carl").await;
        b.fill("#password", "wrong-password-1").await;
        b.click("#submit").await;
        b.wait_text("#form-error", "Wrong username or password.")
            .await;
        assert_eq!(b.attr("#username", "value").await.as_deref(), Some("carl"));
        b.screenshot("login-error").await;
        b.fill("#password", PASSWORD).await;
        b.click("#submit").await;
        b.wait_text("h1", "Hello, carl").await;
        assert_eq!(b.path().await, "/dashboard");

        b.close().await;
        t.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_watch_the_load_and_both_flow_views_fill_from_a_running_network() {
    within_limit(async {
        let t = Tracker::start(&[("rock", "<i>Rock</i> & \"Roll\"", 5), ("jazz", "Jazz", 0)]).await;
        t.user("root").await;
        t.make_admin("root").await;
        let alice = t.user("alice").await;
        let dora = t.user("dora").await;
        let vera = t.user("vera").await;
        vera.buy("rock").await.unwrap();
        let a1 = alice.register_node(&cache_at(4101)).await.unwrap().node_id;
        let d1 = dora.register_node(&cache_at(4102)).await.unwrap().node_id;
        let v = vera
            .register_node(&NodeRegistration::viewer())
            .await
            .unwrap()
            .node_id;
        // Two caches fetch from the origin and send to one viewer, whose receipts confirm it
        // all (three chunks and two), and who gets the rest from the origin.
        let c = t.chunk_len("rock").await;
        t.wait_placed(&alice, &a1, "rock").await;
        t.wait_placed(&dora, &d1, "rock").await;
        let (a, d, o) = (3 * c, 2 * c, 3 * c / 2);
        let holding = |indices: Vec<u16>| {
            vec![rivulet_tracker_client::Holding {
                video: "rock".into(),
                indices,
            }]
        };
        alice
            .heartbeat(
                &a1,
                &Heartbeat {
                    holdings: holding(vec![16, 17, 18]),
                    ..moved(
                        vec![peer_bytes(&v, "rock", a)],
                        vec![peer_bytes("origin", "rock", 8000)],
                    )
                },
            )
            .await
            .unwrap();
        dora.heartbeat(
            &d1,
            &Heartbeat {
                holdings: holding(vec![19, 20]),
                ..moved(
                    vec![peer_bytes(&v, "rock", d)],
                    vec![peer_bytes("origin", "rock", 4000)],
                )
            },
        )
        .await
        .unwrap();
        let watching = |received| Heartbeat {
            watching: Some("rock".into()),
            ..moved(vec![], received)
        };
        vera.heartbeat(
            &v,
            &watching(vec![
                receipts(&a1, "rock", 0..3, c),
                receipts(&d1, "rock", 3..5, c),
                peer_bytes("origin", "rock", o),
            ]),
        )
        .await
        .unwrap();

        let b = Browser::start(&t).await;
        // Admin pages ask for a log-in first and come back after it.
        b.open("/admin/accounts").await;
        b.wait_text("h1", "Log in").await;
        b.screenshot("login").await;
        b.fill("#username", "root").await;
        b.fill("#password", PASSWORD).await;
        b.click("#submit").await;
        b.wait_text("h1", "Accounts").await;
        assert_eq!(b.path().await, "/admin/accounts");
        let row = |name: &str| format!("#accounts tr[data-account='{name}']");
        let points = |bytes: u64| (100 + bytes / 1000).to_string();
        assert_eq!(
            b.text(&format!("{} .points", row("alice"))).await,
            points(a)
        );
        assert_eq!(b.text(&format!("{} .points", row("dora"))).await, points(d));
        assert_eq!(b.text(&format!("{} .points", row("vera"))).await, "95");
        assert_eq!(
            b.attr(&format!("{} .credited data", row("alice")), "value")
                .await,
            Some(a.to_string())
        );
        assert!(b.text(&row("root")).await.contains("admin"));
        b.screenshot("admin-accounts").await;

        // Load overview: the four series drawn, the totals right.
        b.click("nav.tabs a[href='/admin']").await;
        b.wait_text("h1", "Load overview").await;
        for key in [
            "origin-to-viewers",
            "origin-to-caches",
            "caches-to-viewers",
            "demand",
        ] {
            let points = b
                .attr(&format!("#load-svg #line-{key}"), "points")
                .await
                .unwrap();
            assert!(points.split(' ').count() >= 30, "{key} is a line over time");
        }
        let total = |key: &'static str| format!("#total-{key} data");
        assert_eq!(
            b.attr(&total("origin-to-caches"), "value").await.as_deref(),
            Some("12000")
        );
        assert_eq!(
            b.attr(&total("origin-to-viewers"), "value").await,
            Some(o.to_string())
        );
        assert_eq!(
            b.attr(&total("caches-to-viewers"), "value").await,
            Some((a + d).to_string())
        );
        assert_eq!(
            b.attr(&total("demand"), "value").await,
            Some((a + d + o).to_string())
        );
        b.wait_text("#share td:last-child", "77% of demand").await;
        b.wait_text("#caches-online", "2").await;
        b.wait_text("#viewers-online", "1").await;

        // Live: the viewer reports more from the origin; the chart and totals follow
        // without a reload.
        let before = b.attr("#load-svg", "data-peak-bps").await;
        // Twice everything so far, so the chart's peak moves whichever bucket it lands in.
        let live = 2 * (a + d + o);
        vera.heartbeat(&v, &watching(vec![peer_bytes("origin", "rock", live)]))
            .await
            .unwrap();
        eventually("the totals to refresh live", || async {
            let el = b
                .client
                .find(fantoccini::Locator::Css(&total("origin-to-viewers")))
                .await
                .ok()?;
            (el.attr("value").await.ok()? == Some((o + live).to_string())).then_some(())
        })
        .await;
        assert_eq!(
            b.attr(&total("demand"), "value").await,
            Some((a + d + o + live).to_string())
        );
        assert_ne!(b.attr("#load-svg", "data-peak-bps").await, before);
        let refreshed: u32 = b
            .attr("#live", "data-refreshed")
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(refreshed >= 1);
        assert_eq!(b.path().await, "/admin", "no reload happened");
        b.screenshot("admin-load").await;

        // Nodes table, linking to the flow views.
        b.click("nav.tabs a[href='/admin/nodes']").await;
        assert_eq!(b.all("#nodes tbody tr").await.len(), 3);
        let a1_row = b.text(&format!("#nodes tr[data-node='{a1}']")).await;
        assert!(
            a1_row.contains("alice") && a1_row.contains("cache4101.example:4101"),
            "{a1_row}"
        );
        assert!(a1_row.contains("10.0 Mbit/s up · 1.50 GB"), "{a1_row}");
        assert!(a1_row.contains("rock: 3 chunks"), "{a1_row}");
        assert!(
            b.text(&format!("#nodes tr[data-node='{v}']"))
                .await
                .contains("rock")
        );
        b.screenshot("admin-nodes").await;

        // The viewer's flow view: which caches send it chunks, and how much.
        b.click(&format!("#nodes tr[data-node='{v}'] a.flows"))
            .await;
        b.wait_text("#gets-from h2", "Which caches send it chunks")
            .await;
        let from = |peer: &str| format!("#received-table tr[data-peer='{peer}']");
        assert_eq!(b.attr(&from(&a1), "data-bytes").await, Some(a.to_string()));
        assert_eq!(b.attr(&from(&d1), "data-bytes").await, Some(d.to_string()));
        assert_eq!(
            b.attr(&from("origin"), "data-bytes").await,
            Some((o + live).to_string())
        );
        assert!(
            b.text(&from(&a1))
                .await
                .contains(&rivulet_node_core::units::format_bytes(a))
        );
        assert_eq!(b.all("#flow-svg line.edge").await.len(), 3);
        b.screenshot("flows-viewer").await;

        // The cache's flow view: which viewers it sends to.
        b.click(&format!("{} a", from(&a1))).await;
        b.wait_text("#sends-to h2", "Which viewers it sends to")
            .await;
        let to_v = format!("#sent-table tr[data-peer='{v}']");
        assert_eq!(b.attr(&to_v, "data-bytes").await, Some(a.to_string()));
        assert_eq!(b.all("#sent-table tbody tr").await.len(), 1);
        assert_eq!(
            b.attr("#received-table tr[data-peer='origin']", "data-bytes")
                .await
                .as_deref(),
            Some("8000")
        );
        assert_eq!(b.all("#flow-svg line.edge").await.len(), 1);
        b.screenshot("flows-cache").await;

        // Videos: size, segments, k/n, price, viewers now, popularity; titles as text.
        b.click("nav.tabs a[href='/admin/videos']").await;
        let rock = "#videos tr[data-video='rock']";
        assert_eq!(
            b.text(&format!("{rock} td.title")).await,
            "<i>Rock</i> & \"Roll\""
        );
        assert!(
            b.all("#videos td.title i").await.is_empty(),
            "no markup from titles"
        );
        assert_eq!(b.text(&format!("{rock} td.viewers")).await, "1");
        assert_eq!(b.text(&format!("{rock} td.caches")).await, "2");
        assert!(
            b.text(&format!("{rock} td.popularity"))
                .await
                .ends_with("1 purchase")
        );
        let rock_row = b.text(rock).await;
        assert!(rock_row.contains("5 points"), "{rock_row}");
        assert!(rock_row.contains(" / "), "k / n shown: {rock_row}");
        b.wait_text("#videos tr[data-video='jazz'] td.viewers", "0")
            .await;
        b.screenshot("admin-videos").await;

        // An unknown node is a 404 page, still in the admin layout.
        b.open("/admin/flows/viewer-0000000000000000").await;
        b.wait_text("h1", "No such node").await;
        b.open("/no/such/page").await;
        b.wait_text("h1", "Page not found").await;
        b.screenshot("not-found").await;

        // The live page notices by itself when its session is over and shows the log-in
        // form, which then leads back to the same view.
        b.open("/admin?minutes=5").await;
        b.wait_text("h1", "Load overview").await;
        sqlx::query(
            "UPDATE sessions SET expires_at = 0
             WHERE account_id = (SELECT id FROM accounts WHERE username = 'root')",
        )
        .execute(&t.db().await)
        .await
        .unwrap();
        // As if the week had passed: the tracker's remembered sessions are over too.
        t.net.server().forget_sessions();
        b.wait_text("h1", "Log in").await;
        b.wait_text("#notice", "Your session has ended. Log in again to go on.")
            .await;
        b.fill("#username", "root").await;
        b.fill("#password", PASSWORD).await;
        b.click("#submit").await;
        b.wait_text("h1", "Load overview").await;
        assert_eq!(b.path().await, "/admin?minutes=5");

        b.close().await;
        t.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_logged_out_and_forms_without_their_token_are_refused() {
    within_limit(async {
        let t = Tracker::start(&[]).await;
        let b = Browser::start(&t).await;
        b.open("/signup").await;
        b.fill("#username", "erin").await;
        b.fill("#password", PASSWORD).await;
        b.fill("#confirm", PASSWORD).await;
        b.click("#submit").await;
        b.wait_text("h1", "Hello, erin").await;

        // The browser keeps a cookie the scripts of the page cannot read.
        let cookie = b.client.get_named_cookie(SESSION_COOKIE).await.unwrap();
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        let seen_by_scripts = b
            .client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert!(!seen_by_scripts.as_str().unwrap().contains(SESSION_COOKIE));

        // A form sent without its token is refused, and nothing happens.
        b.client
            .execute(
                "const f = document.querySelector('form.logout');\
                 f.querySelector('input[name=csrf]').remove(); f.submit();",
                vec![],
            )
            .await
            .unwrap();
        b.wait_text("h1", "Form refused").await;
        b.screenshot("csrf-refused").await;
        b.open("/dashboard").await;
        b.wait_text("h1", "Hello, erin").await;

        // Past its lifetime the session is over: a reload shows the log-in page.
        let db = t.db().await;
        sqlx::query(
            "UPDATE sessions SET expires_at = 0
             WHERE account_id = (SELECT id FROM accounts WHERE username = 'erin')",
        )
        .execute(&db)
        .await
        .unwrap();
        t.net.server().forget_sessions();
        b.client.refresh().await.unwrap();
        b.wait_text("h1", "Log in").await;
        b.wait_text("#notice", "Your session has ended. Log in again to go on.")
            .await;
        assert!(b.path().await.starts_with("/login?expired=1"));
        b.screenshot("session-expired").await;
        // The stale cookie was cleared.
        assert!(b.client.get_named_cookie(SESSION_COOKIE).await.is_err());

        // Over plain HTTP with the session cookie: POSTs without a good token get 403.
        let session = t.client().login(&web_support::creds("erin")).await.unwrap();
        let cookie = format!("{SESSION_COOKIE}={}", session.token);
        let dashboard = http()
            .get(t.url("/dashboard"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(dashboard.status().as_u16(), 200);
        let csrf = csrf_in(&dashboard.text().await.unwrap());
        for body in [
            String::new(),
            format!("{CSRF_FIELD}="),
            format!("{CSRF_FIELD}={}", "0".repeat(64)),
        ] {
            let resp = http()
                .post(t.url("/logout"))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 403, "{body:?}");
            assert!(resp.text().await.unwrap().contains("Form refused"));
        }
        let still = http()
            .get(t.url("/dashboard"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            still.status().as_u16(),
            200,
            "refused log-outs changed nothing"
        );
        // With the token it works, and the cookie is cleared.
        let out = http()
            .post(t.url("/logout"))
            .header("cookie", &cookie)
            .form(&[(CSRF_FIELD, csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status().as_u16(), 303);
        let cleared = set_cookie(&out, SESSION_COOKIE).unwrap();
        assert_eq!(cleared, format!("{SESSION_COOKIE}="));
        assert!(
            t.client().with_token(session.token).me().await.is_err(),
            "the session ended"
        );

        // Log-in and sign-up forms need the token that matches their nonce cookie.
        let page = http().get(t.url("/login")).send().await.unwrap();
        let nonce = set_cookie(&page, FORM_COOKIE).expect("a form nonce cookie");
        let raw = page
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(FORM_COOKIE))
            .unwrap();
        assert!(
            raw.contains("HttpOnly") && raw.contains("SameSite=Strict") && raw.contains("Path=/")
        );
        let token = csrf_in(&page.text().await.unwrap());
        let login = |cookie: Option<String>, token: Option<String>| {
            let mut req = http().post(t.url("/login"));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let mut form = vec![
                ("username", "erin".to_owned()),
                ("password", PASSWORD.to_owned()),
            ];
            if let Some(tok) = token {
                form.push((CSRF_FIELD, tok));
            }
            req.form(&form).send()
        };
        assert_eq!(
            login(None, Some(token.clone()))
                .await
                .unwrap()
                .status()
                .as_u16(),
            403
        );
        assert_eq!(
            login(Some(nonce.clone()), None)
                .await
                .unwrap()
                .status()
                .as_u16(),
            403
        );
        let other = format!("{FORM_COOKIE}={}", "ab".repeat(32));
        assert_eq!(
            login(Some(other), Some(token.clone()))
                .await
                .unwrap()
                .status()
                .as_u16(),
            403
        );
        let ok = login(Some(nonce), Some(token)).await.unwrap();
        assert_eq!(ok.status().as_u16(), 303);
        let raw = ok
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(SESSION_COOKIE))
            .unwrap();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(raw.contains(attribute), "{raw} has {attribute}");
        }
        // The cookie lasts as long as the session row: seven days, give or take the second
        // that may tick between the two clocks' readings.
        let max_age: i64 = raw
            .split("Max-Age=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{raw} has a Max-Age"));
        let lifetime = rivulet_tracker::accounts::SESSION_SECONDS;
        assert!((lifetime - 2..=lifetime).contains(&max_age), "{raw}");
        let signup = http()
            .post(t.url("/signup"))
            .form(&[
                ("username", "fred"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status().as_u16(), 403);

        b.close().await;
        t.net.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn bad_requests_get_clear_error_pages_and_pages_load_nothing_from_elsewhere() {
    within_limit(async {
        let t = Tracker::start(&[]).await;
        let c = http();
        let get = |path: &str| c.get(t.url(path)).send();

        // Unknown pages are HTML 404s for browsers, the API's JSON body for programs;
        // unknown API paths always keep the JSON body.
        let resp = c
            .get(t.url("/no/such/page"))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.text().await.unwrap().contains("Page not found"));
        let resp = get("/no/such/page").await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        assert!(resp.text().await.unwrap().contains("\"not_found\""));
        let resp = get("/api/v1/no-such-endpoint").await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        assert!(resp.text().await.unwrap().contains("\"not_found\""));
        assert_eq!(get("/api/v1/videos").await.unwrap().status().as_u16(), 200);
        assert_eq!(get("/metrics").await.unwrap().status().as_u16(), 200);
        assert_eq!(
            get("/assets/nothing.css").await.unwrap().status().as_u16(),
            404
        );

        // Wrong methods, oversized and broken forms: 4xx pages, never 5xx.
        let resp = c.put(t.url("/login")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        assert!(resp.text().await.unwrap().contains("Method not allowed"));
        let page = get("/login").await.unwrap();
        let nonce = set_cookie(&page, FORM_COOKIE).unwrap();
        let token = csrf_in(&page.text().await.unwrap());
        let post = |path: &str, body: String| {
            c.post(t.url(path))
                .header("cookie", &nonce)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        let huge = format!("{CSRF_FIELD}={token}&username={}", "a".repeat(100_000));
        let resp = post("/login", huge).await.unwrap();
        assert_eq!(resp.status().as_u16(), 413);
        assert!(resp.text().await.unwrap().contains("Form too large"));
        let resp = post("/login", format!("{CSRF_FIELD}={token}"))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("Enter your username and your password.")
        );
        let resp = post("/signup", format!("{CSRF_FIELD}={token}"))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let text = resp.text().await.unwrap();
        assert!(text.contains("Choose a username.") && text.contains("Choose a password."));
        let resp = post("/login", format!("{CSRF_FIELD}={token}&username=%ZZ%"))
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        let resp = c
            .post(t.url("/login"))
            .header("cookie", &nonce)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
        assert!(resp.text().await.unwrap().contains("<h1>"));

        // An unknown name and a wrong password read the same; a locked account says so.
        for _ in 0..5 {
            let resp = post(
                "/login",
                format!("{CSRF_FIELD}={token}&username=nobody&password=wrong-pass-1"),
            )
            .await
            .unwrap();
            assert_eq!(resp.status().as_u16(), 401);
            assert!(
                resp.text()
                    .await
                    .unwrap()
                    .contains("Wrong username or password.")
            );
        }
        let resp = post(
            "/login",
            format!("{CSRF_FIELD}={token}&username=nobody&password=wrong-pass-1"),
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("Too many failed log-ins")
        );

        // Signed-in pages send strangers to the log-in page, and back after it.
        let resp = get("/admin/nodes").await.unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(resp.headers()["location"], "/login?next=/admin/nodes");
        let resp = get("/admin/load.json").await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let resp = get("/login?next=https://evil.example/").await.unwrap();
        assert!(!resp.text().await.unwrap().contains("evil.example"));

        // Admin query and path mistakes.
        t.user("root").await;
        t.make_admin("root").await;
        let session = t.client().login(&web_support::creds("root")).await.unwrap();
        let cookie = format!("{SESSION_COOKIE}={}", session.token);
        for (path, status) in [
            ("/admin?minutes=abc", 400),
            ("/admin?minutes=0", 400),
            ("/admin?minutes=99999", 400),
            ("/admin/load.json?minutes=abc", 400),
            ("/admin/flows/%3Cscript%3E", 404),
            ("/admin/flows/viewer-ffff", 404),
            ("/admin?minutes=5", 200),
        ] {
            let resp = c
                .get(t.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{path}");
        }

        // Every page loads only from the tracker itself and forbids the rest.
        for path in ["/", "/about", "/login", "/signup", "/admin"] {
            let resp = c
                .get(t.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            let html = resp.text().await.unwrap();
            for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
                assert!(!html.contains(outside), "{path} loads {outside}");
            }
        }
        for (asset, kind) in [
            ("/assets/style.css", "text/css"),
            ("/assets/live.js", "text/javascript"),
            ("/assets/logo.svg", "image/svg+xml"),
        ] {
            let resp = get(asset).await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with(kind)
            );
        }
        t.net.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_views_show_real_caches_serving_a_real_viewer() {
    use rivulet_localnet::CacheSpec;
    use rivulet_node_core::format::Manifest;
    use rivulet_node_core::viewer::{Viewer, WatchOptions};
    within_limit(async {
        let t = Tracker::start_with(&[("film", "Film", 0)], |c| {
            c.node_timeout = Duration::from_secs(3);
            c.placement_interval = Duration::from_millis(300);
        })
        .await;
        t.user("root").await;
        t.make_admin("root").await;
        // Two real caches, one per owner, on loopback.
        let mut caches = Vec::new();
        for owner in ["alice", "dora"] {
            t.user(owner).await;
            let spec = CacheSpec::new(owner, PASSWORD)
                .storage(100_000_000)
                .upload(1_000_000_000);
            let cache = t.net.start_cache(&spec).await.unwrap();
            caches.push(cache);
        }
        // A purchase makes the film popular; the caches fetch their share of it.
        let vera = t.user("vera").await;
        vera.buy("film").await.unwrap();
        let statuses: Vec<_> = caches.iter().map(|c| c.status()).collect();
        eventually("the caches to hold the film", || {
            let all_hold = statuses.iter().all(|s| !s.borrow().holdings.is_empty());
            async move { all_hold.then_some(()) }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // A real viewer plays it from them and reports what it verified.
        let manifest = Manifest::from_json(&vera.manifest("film").await.unwrap()).unwrap();
        let video = vera.video("film").await.unwrap();
        let session = Viewer::open(
            &vera,
            "film",
            std::sync::Arc::new(manifest),
            video.duration_ms,
            &t.net.dir().join(".film.part"),
            &WatchOptions {
                realtime: true,
                ..WatchOptions::default()
            },
        )
        .await
        .unwrap();
        let viewer_id = session.node_id().to_owned();
        let cache_ids: Vec<String> = statuses
            .iter()
            .map(|s| s.borrow().node_id.clone())
            .collect();
        let progress = session.progress().clone();
        eventually("the viewer to get bytes from both caches", || {
            let from = progress.by_peer();
            let both = cache_ids
                .iter()
                .all(|c| from.get(c).is_some_and(|b| *b > 0));
            async move { both.then_some(()) }
        })
        .await;

        let b = Browser::start(&t).await;
        b.log_in("root", PASSWORD).await;
        // The viewer's view: both caches send it chunks (its next heartbeat reports them).
        for cache in &cache_ids {
            eventually("the viewer's flow view to list the cache", || async {
                b.open(&format!("/admin/flows/{viewer_id}")).await;
                b.text("main").await.contains(cache.as_str()).then_some(())
            })
            .await;
        }
        b.screenshot("flows-real-viewer").await;
        // Each cache's view: it sends to the viewer.
        for cache in &cache_ids {
            eventually("the cache's flow view to list the viewer", || async {
                b.open(&format!("/admin/flows/{cache}")).await;
                b.text("main")
                    .await
                    .contains(viewer_id.as_str())
                    .then_some(())
            })
            .await;
        }
        b.screenshot("flows-real-cache").await;
        b.close().await;
        session.close().await;
        for cache in caches {
            cache.stop().await;
        }
        t.net.shutdown().await;
    })
    .await;
}
