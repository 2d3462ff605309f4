//! The Wi-Fi network QR code phones' cameras understand:
//! `WIFI:S:<ssid>;T:WPA;P:<passphrase>;;`, with `\ ; , : "` escaped by a
//! backslash.

/// The text of the QR code for a WPA2 network.
pub fn wifi_qr_text(ssid: &str, passphrase: &str) -> String {
    format!("WIFI:S:{};T:WPA;P:{};;", escape(ssid), escape(passphrase))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ';' | ',' | ':' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads such a text back (what a phone does): `(ssid, passphrase)`.
pub fn parse_wifi_qr(text: &str) -> Option<(String, String)> {
    let body = text.strip_prefix("WIFI:")?;
    let (mut ssid, mut pass, mut kind) = (None, None, None);
    let mut field = String::new();
    let mut chars = body.chars();
    let mut fields = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.push(chars.next()?),
            ';' => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if !field.is_empty() {
        return None;
    }
    for f in fields.iter().filter(|f| !f.is_empty()) {
        let (k, v) = f.split_once(':')?;
        match k {
            "S" => ssid = Some(v.to_owned()),
            "P" => pass = Some(v.to_owned()),
            "T" => kind = Some(v.to_owned()),
            _ => {}
        }
    }
    (kind.as_deref() == Some("WPA")).then_some(())?;
    Some((ssid?, pass?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_escaped() {
        assert_eq!(
            wifi_qr_text("DIRECT-gH", "TMP0cJ0U"),
            "WIFI:S:DIRECT-gH;T:WPA;P:TMP0cJ0U;;"
        );
        assert_eq!(
            wifi_qr_text("a;b", "c:d\\e,\"f"),
            "WIFI:S:a\\;b;T:WPA;P:c\\:d\\\\e\\,\\\"f;;"
        );
    }

    proptest! {
        #[test]
        fn round_trips(ssid in "\\PC{1,32}", pass in "\\PC{8,63}") {
            prop_assert_eq!(parse_wifi_qr(&wifi_qr_text(&ssid, &pass)), Some((ssid, pass)));
        }

        #[test]
        fn parser_never_panics(text in "WIFI:\\PC{0,80}") {
            let _ = parse_wifi_qr(&text);
        }
    }
}
