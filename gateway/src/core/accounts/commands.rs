//! The accounts from the user's own XMPP client: XEP-0077 (In-Band Registration) and
//! XEP-0050 (Ad-Hoc Commands) on the component domain `C`, with XEP-0004 data forms.
//!
//! | request to `C` | answer |
//! |---|---|
//! | `get` `jabber:iq:register` | the form of the user's default account (prefilled, no password), `<registered/>` when he has one |
//! | `set` `jabber:iq:register` with a submitted form | creates his default account, or changes it (an empty password keeps the old one) |
//! | `set` `jabber:iq:register` `<remove/>` | deletes all his accounts (each unregistered) |
//! | disco#items node `http://jabber.org/protocol/commands` | `list-accounts`, `add-account`, `remove-account`, `set-default-account` |
//! | `execute` a command without a form | `executing` with its form (`list-accounts`: `completed` with the list) |
//! | `execute`/`complete` with a submitted form | `completed` with a note, or an error with the reason |
//!
//! Only users of the home domain `H` may have accounts (`forbidden` otherwise). Commands are
//! stateless: a session id is handed out and echoed, and any submitted form is acted on.

use std::collections::HashMap;
use std::time::Instant;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::{AccountRecord, AccountTransport, AccountView, DEFAULT_EXPIRES};
use crate::core::{Gateway, Output};

/// XEP-0077.
pub const NS_REGISTER: &str = "jabber:iq:register";
/// XEP-0050.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// XEP-0004.
pub const NS_DATA: &str = "jabber:x:data";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

/// The commands, node and name.
pub const COMMANDS: [(&str, &str); 4] = [
    ("list-accounts", "List my SIP accounts"),
    ("add-account", "Add or change a SIP account"),
    ("remove-account", "Remove a SIP account"),
    ("set-default-account", "Choose my default SIP account"),
];

/// Escapes text for an XML attribute or element.
fn esc(s: &str) -> String {
    crate::stanza::xml_safe(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// A XEP-0004 field.
fn field(kind: &str, var: &str, label: &str, required: bool, value: Option<&str>) -> String {
    let mut f = format!("<field type='{kind}' var='{var}' label='{}'>", esc(label));
    if required {
        f.push_str("<required/>");
    }
    if let Some(v) = value {
        f.push_str(&format!("<value>{}</value>", esc(v)));
    }
    f.push_str("</field>");
    f
}

fn list_single(var: &str, label: &str, value: Option<&str>, options: &[(&str, &str)]) -> String {
    let mut f = format!(
        "<field type='list-single' var='{var}' label='{}'><required/>",
        esc(label)
    );
    if let Some(v) = value {
        f.push_str(&format!("<value>{}</value>", esc(v)));
    }
    for (v, l) in options {
        f.push_str(&format!(
            "<option label='{}'><value>{}</value></option>",
            esc(l),
            esc(v)
        ));
    }
    f.push_str("</field>");
    f
}

/// The fields of an account form, prefilled from `rec` (never the password).
fn account_fields(rec: Option<&AccountRecord>, with_id: bool) -> String {
    let v = |f: fn(&AccountRecord) -> Option<String>| rec.and_then(f);
    let mut s = String::new();
    if with_id {
        s.push_str(&field(
            "text-single",
            "id",
            "Account id (a-z, 0-9, -); empty: from the registrar",
            false,
            v(|r| Some(r.id.clone())).as_deref(),
        ));
    }
    s.push_str(&field(
        "text-single",
        "registrar",
        "Registrar (sip:provider.example)",
        true,
        v(|r| Some(r.registrar.clone())).as_deref(),
    ));
    s.push_str(&field(
        "text-single",
        "user",
        "User",
        true,
        v(|r| Some(r.user.clone())).as_deref(),
    ));
    s.push_str(&field(
        "text-single",
        "auth_user",
        "Authentication user (if not the user)",
        false,
        v(|r| r.auth_user.clone()).as_deref(),
    ));
    s.push_str(&field(
        "text-private",
        "password",
        "Password",
        rec.is_none(),
        None,
    ));
    s.push_str(&list_single(
        "transport",
        "Transport",
        Some(match rec.map(|r| r.transport) {
            Some(AccountTransport::Tcp) => "tcp",
            Some(AccountTransport::Tls) => "tls",
            _ => "udp",
        }),
        &[("udp", "UDP"), ("tcp", "TCP"), ("tls", "TLS")],
    ));
    s.push_str(&field(
        "text-single",
        "outbound_proxy",
        "Outbound proxy (sip:proxy.example:5060)",
        false,
        v(|r| r.outbound_proxy.clone()).as_deref(),
    ));
    s.push_str(&field(
        "text-single",
        "display_name",
        "Display name",
        false,
        v(|r| r.display_name.clone()).as_deref(),
    ));
    s
}

/// The values of a submitted form (`type='submit'`), first value per field.
fn submitted(parent: &Element) -> Option<HashMap<String, String>> {
    let x = parent.get_child("x", NS_DATA)?;
    if x.attr("type") != Some("submit") {
        return None;
    }
    Some(
        x.children()
            .filter(|f| f.name() == "field")
            .filter_map(|f| {
                let var = f.attr("var")?.to_string();
                let value = f
                    .children()
                    .find(|c| c.name() == "value")
                    .map(|v| v.text())
                    .unwrap_or_default();
                Some((var, value.trim().to_string()))
            })
            .collect(),
    )
}

/// Merges submitted values into a record (`base` for a change, else a new one).
fn record_from(
    owner: &str,
    values: &HashMap<String, String>,
    base: Option<AccountRecord>,
) -> Result<AccountRecord, String> {
    let get = |k: &str| values.get(k).filter(|v| !v.is_empty()).cloned();
    let mut rec = match base {
        Some(b) => b,
        None => {
            let registrar = get("registrar").ok_or("the registrar is required")?;
            AccountRecord {
                jid: owner.to_string(),
                id: get("id").unwrap_or_else(|| super::id_from_registrar(&registrar)),
                registrar,
                user: String::new(),
                auth_user: None,
                password: String::new(),
                transport: AccountTransport::Udp,
                outbound_proxy: None,
                display_name: None,
                default: false,
                expires: DEFAULT_EXPIRES,
                created_unix: 0,
            }
        }
    };
    if let Some(v) = get("registrar") {
        rec.registrar = v;
    }
    if let Some(v) = get("user") {
        rec.user = v;
    }
    if let Some(v) = get("password") {
        rec.password = v;
    }
    if values.contains_key("auth_user") {
        rec.auth_user = get("auth_user");
    }
    if values.contains_key("outbound_proxy") {
        rec.outbound_proxy = get("outbound_proxy");
    }
    if values.contains_key("display_name") {
        rec.display_name = get("display_name");
    }
    match get("transport").as_deref() {
        Some("tcp") => rec.transport = AccountTransport::Tcp,
        Some("udp") => rec.transport = AccountTransport::Udp,
        Some("tls") => rec.transport = AccountTransport::Tls,
        Some(t) => return Err(format!("transport {t:?}: udp, tcp or tls")),
        None => {}
    }
    if let Some(d) = get("default") {
        rec.default = d == "1" || d == "true";
    }
    if rec.user.is_empty() {
        return Err("the user is required".into());
    }
    if rec.password.is_empty() {
        return Err("the password is required".into());
    }
    Ok(rec)
}

fn status_line(v: &AccountView) -> String {
    let mut s = format!("{} {} {}", v.id, v.aor, v.state);
    if let Some(e) = v.expires_in {
        s.push_str(&format!(" (expires in {e} s)"));
    }
    if let Some(e) = &v.last_error {
        s.push_str(&format!(": {e}"));
    }
    if v.default {
        s.push_str(" [default]");
    }
    s
}

impl Gateway {
    /// Answers XEP-0077 and XEP-0050 requests to `C`; `false` when `iq` is not one.
    pub(in crate::core) fn on_account_iq(&mut self, now: Instant, iq: &Element) -> bool {
        let kind = iq.attr("type").unwrap_or_default();
        if !matches!(kind, "get" | "set") || iq.attr("to") != Some(self.settings.component.as_str())
        {
            return false;
        }
        let Some(payload) = iq.children().next() else {
            return false;
        };
        let ours = match (kind, payload.ns().as_str(), payload.name()) {
            (_, NS_REGISTER, "query") => true,
            ("set", NS_COMMANDS, "command") => true,
            ("get", NS_DISCO_ITEMS, "query") => payload.attr("node") == Some(NS_COMMANDS),
            _ => false,
        };
        if !ours {
            return false;
        }
        let Some(from) = iq.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return true;
        };
        if from.domain().as_str() != self.settings.home || from.node().is_none() {
            self.iq_error(
                iq,
                DefinedCondition::Forbidden,
                "SIP accounts are for users of the home domain",
            );
            return true;
        }
        let owner = stox_mappings::normalize_jid(from.to_bare().as_str());
        let payload = payload.clone();
        match (kind, payload.ns().as_str()) {
            ("get", NS_REGISTER) => self.register_form(iq, &owner),
            ("set", NS_REGISTER) => self.register_set(now, iq, &owner, &payload),
            ("get", _) => self.command_list(iq),
            _ => self.command(now, iq, &owner, &payload),
        }
        true
    }

    fn iq_error(&mut self, iq: &Element, cond: DefinedCondition, text: &str) {
        self.outputs
            .push_back(Output::Stanza(crate::stanza::error_reply(
                iq,
                &cond,
                Some(text),
            )));
    }

    fn iq_result(&mut self, iq: &Element, payload: &str) {
        let xml = format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{}' from='{}' to='{}'>{payload}</iq>",
            esc(iq.attr("id").unwrap_or_default()),
            esc(&self.settings.component),
            esc(iq.attr("from").unwrap_or_default()),
        );
        match xml.parse::<Element>() {
            Ok(e) => self.outputs.push_back(Output::Stanza(e)),
            Err(e) => {
                tracing::warn!(error = %e, "an account iq answer did not parse");
                self.iq_error(iq, DefinedCondition::InternalServerError, "answer");
            }
        }
    }

    fn default_record(&self, owner: &str) -> Option<AccountRecord> {
        self.accounts
            .accounts
            .values()
            .find(|a| a.rec.jid == owner && a.rec.default)
            .map(|a| a.rec.clone())
    }

    /// XEP-0077 §3.1: the form, prefilled with the default account.
    fn register_form(&mut self, iq: &Element, owner: &str) {
        let rec = self.default_record(owner);
        let registered = if rec.is_some() { "<registered/>" } else { "" };
        let text = "Your SIP account at a provider: stox registers it and sends what you \
                    write through this gateway with its identity.";
        let payload = format!(
            "<query xmlns='{NS_REGISTER}'>{registered}<instructions>{text}</instructions>\
             <x xmlns='{NS_DATA}' type='form'><title>SIP account</title>\
             <instructions>{text}</instructions>\
             <field type='hidden' var='FORM_TYPE'><value>{NS_REGISTER}</value></field>{}</x></query>",
            account_fields(rec.as_ref(), false)
        );
        self.iq_result(iq, &payload);
    }

    /// XEP-0077 §3.1 (register or change), §3.2 (`<remove/>`).
    fn register_set(&mut self, now: Instant, iq: &Element, owner: &str, query: &Element) {
        if query.get_child("remove", NS_REGISTER).is_some() {
            let ids: Vec<String> = self
                .accounts(now, Some(owner))
                .into_iter()
                .map(|v| v.id)
                .collect();
            for id in ids {
                let _ = self.remove_account(owner, &id);
            }
            return self.iq_result(iq, "");
        }
        let Some(values) = submitted(query) else {
            return self.iq_error(
                iq,
                DefinedCondition::BadRequest,
                "submit the data form (XEP-0004) of the registration",
            );
        };
        let base = self.default_record(owner);
        let rec = match record_from(owner, &values, base) {
            Ok(mut r) => {
                r.default = true;
                r
            }
            Err(why) => return self.iq_error(iq, DefinedCondition::NotAcceptable, &why),
        };
        match self.put_account(now, rec) {
            Ok(_) => self.iq_result(iq, ""),
            Err(e) => self.iq_error(iq, DefinedCondition::NotAcceptable, &e.to_string()),
        }
    }

    /// XEP-0050 §3.2: the commands, as disco items.
    fn command_list(&mut self, iq: &Element) {
        let c = esc(&self.settings.component);
        let items: String = COMMANDS
            .iter()
            .map(|(node, name)| format!("<item jid='{c}' node='{node}' name='{}'/>", esc(name)))
            .collect();
        self.iq_result(
            iq,
            &format!("<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'>{items}</query>"),
        );
    }

    fn command_reply(&mut self, iq: &Element, node: &str, session: &str, status: &str, body: &str) {
        self.iq_result(
            iq,
            &format!(
                "<command xmlns='{NS_COMMANDS}' node='{}' sessionid='{}' status='{status}'>{body}</command>",
                esc(node),
                esc(session)
            ),
        );
    }

    /// XEP-0050 §3.4: one command.
    fn command(&mut self, now: Instant, iq: &Element, owner: &str, cmd: &Element) {
        let node = cmd.attr("node").unwrap_or_default().to_string();
        if !COMMANDS.iter().any(|(n, _)| *n == node) {
            return self.iq_error(iq, DefinedCondition::ItemNotFound, "no such command");
        }
        let session = match cmd.attr("sessionid") {
            Some(s) => s.to_string(),
            None => self.fresh_id(),
        };
        if cmd.attr("action") == Some("cancel") {
            return self.command_reply(iq, &node, &session, "canceled", "");
        }
        let values = submitted(cmd);
        let mine = self.accounts(now, Some(owner));
        let ids: Vec<(&str, &str)> = mine
            .iter()
            .map(|v| (v.id.as_str(), v.aor.as_str()))
            .collect();
        let form = |title: &str, fields: String| {
            format!(
                "<actions execute='complete'><complete/></actions>\
                 <x xmlns='{NS_DATA}' type='form'><title>{}</title>{fields}</x>",
                esc(title)
            )
        };
        match (node.as_str(), values) {
            ("list-accounts", _) => {
                let mut x = format!(
                    "<x xmlns='{NS_DATA}' type='result'><title>SIP accounts</title><reported>\
                     <field var='id' label='Id'/><field var='aor' label='Address'/>\
                     <field var='state' label='State'/><field var='expires_in' label='Expires in (s)'/>\
                     <field var='last_error' label='Last error'/><field var='default' label='Default'/>\
                     </reported>"
                );
                for v in &mine {
                    x.push_str(&format!(
                        "<item><field var='id'><value>{}</value></field>\
                         <field var='aor'><value>{}</value></field>\
                         <field var='state'><value>{}</value></field>\
                         <field var='expires_in'><value>{}</value></field>\
                         <field var='last_error'><value>{}</value></field>\
                         <field var='default'><value>{}</value></field></item>",
                        esc(&v.id),
                        esc(&v.aor),
                        esc(&v.state),
                        v.expires_in.map(|e| e.to_string()).unwrap_or_default(),
                        esc(v.last_error.as_deref().unwrap_or_default()),
                        if v.default { "1" } else { "0" },
                    ));
                }
                x.push_str("</x>");
                let note = if mine.is_empty() {
                    "No SIP accounts.".to_string()
                } else {
                    mine.iter().map(status_line).collect::<Vec<_>>().join("\n")
                };
                let body = format!("<note type='info'>{}</note>{x}", esc(&note));
                self.command_reply(iq, &node, &session, "completed", &body)
            }
            ("add-account", None) => {
                let mut fields = account_fields(None, true);
                fields.push_str(&field(
                    "boolean",
                    "default",
                    "Make it my default",
                    false,
                    Some("0"),
                ));
                let body = form("Add or change a SIP account", fields);
                self.command_reply(iq, &node, &session, "executing", &body)
            }
            ("add-account", Some(values)) => {
                let base = values
                    .get("id")
                    .filter(|i| !i.is_empty())
                    .and_then(|id| self.account_record(owner, id));
                let rec = match record_from(owner, &values, base) {
                    Ok(r) => r,
                    Err(why) => return self.iq_error(iq, DefinedCondition::NotAcceptable, &why),
                };
                match self.put_account(now, rec) {
                    Ok(v) => {
                        let note = format!("Account {} ({}) stored; registering.", v.id, v.aor);
                        let body = format!("<note type='info'>{}</note>", esc(&note));
                        self.command_reply(iq, &node, &session, "completed", &body)
                    }
                    Err(e) => self.iq_error(iq, DefinedCondition::NotAcceptable, &e.to_string()),
                }
            }
            ("remove-account" | "set-default-account", None) => {
                if ids.is_empty() {
                    let body = "<note type='error'>No SIP accounts.</note>";
                    return self.command_reply(iq, &node, &session, "completed", body);
                }
                let title = if node == "remove-account" {
                    "Remove a SIP account"
                } else {
                    "Choose the default SIP account"
                };
                let body = form(title, list_single("id", "Account", None, &ids));
                self.command_reply(iq, &node, &session, "executing", &body)
            }
            ("remove-account" | "set-default-account", Some(values)) => {
                let id = values.get("id").cloned().unwrap_or_default();
                let r = if node == "remove-account" {
                    self.remove_account(owner, &id)
                } else {
                    self.set_default_account(owner, &id)
                };
                match r {
                    Ok(()) => {
                        let note = if node == "remove-account" {
                            format!("Account {id} removed.")
                        } else {
                            format!("Account {id} is now your default.")
                        };
                        let body = format!("<note type='info'>{}</note>", esc(&note));
                        self.command_reply(iq, &node, &session, "completed", &body)
                    }
                    Err(e) => self.iq_error(iq, DefinedCondition::ItemNotFound, &e.to_string()),
                }
            }
            _ => self.iq_error(iq, DefinedCondition::BadRequest, "unexpected command state"),
        }
    }
}
