//! The routing index: an immutable snapshot of all inbound trunks and
//! dispatch rules, built once per change and shared behind an `Arc`, with
//! call matching as methods on it.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use livekit_protocol::{sip_dispatch_rule::Rule, SipDispatchRuleInfo, SipInboundTrunkInfo};

use crate::address::AddressMask;
use crate::call::CallInput;
use crate::dial_plan::national_alias;
use crate::error::{ObjectKind, RoutingError};
use crate::evaluate::{evaluate_dispatch, DispatchResult};
use crate::explain::{PassOverReason, PassedOver};
use crate::ids::RandomSource;
use crate::number::normalize_number;
use crate::validate::{dispatch_conflict_error, dispatch_rule_keys, rule_pin, rule_room};

/// Policy switches of the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutingOptions {
    /// Let a call that matches no trunk go on to dispatch (where only
    /// wildcard rules can take it), as LiveKit's open-source server does.
    /// Off by default: such a call is refused.
    pub allow_unmatched_calls: bool,
}

/// How a trunk was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkMatchKind {
    /// A trunk listing the called number.
    Specific,
    /// A wildcard trunk (no numbers).
    Default,
    /// No trunk matched and `allow_unmatched_calls` let the call through.
    Unmatched,
}

/// The trunk that takes a call.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkMatch {
    /// The trunk; `None` only for [`TrunkMatchKind::Unmatched`].
    pub trunk: Option<Arc<SipInboundTrunkInfo>>,
    /// How it was chosen.
    pub kind: TrunkMatchKind,
}

/// Digest credentials a call must present. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestAuth {
    /// Expected user name.
    pub username: String,
    /// Password to check the response against.
    pub password: String,
    /// Realm to challenge with ("" means the gateway's default).
    pub realm: String,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

impl TrunkMatch {
    /// The trunk's ID, or "".
    pub fn trunk_id(&self) -> &str {
        self.trunk
            .as_deref()
            .map(|t| t.sip_trunk_id.as_str())
            .unwrap_or("")
    }

    /// The digest challenge to issue: only when the trunk has both a user name
    /// and a password.
    pub fn digest_auth(&self) -> Option<DigestAuth> {
        let trunk = self.trunk.as_deref()?;
        (!trunk.auth_username.is_empty() && !trunk.auth_password.is_empty()).then(|| DigestAuth {
            username: trunk.auth_username.clone(),
            password: trunk.auth_password.clone(),
            realm: trunk.auth_realm.clone(),
        })
    }
}

/// The trunk decision for a call, with every trunk that was passed over.
#[derive(Debug, Clone)]
pub struct TrunkReport {
    /// The trunk, or why the call is refused.
    pub result: Result<TrunkMatch, RoutingError>,
    /// Trunks considered and not taken, each with its reason.
    pub passed_over: Vec<PassedOver>,
}

/// The dispatch decision for a call.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchDecision {
    /// The best rule is PIN-protected: prompt, then dispatch again with the PIN.
    RequestPin {
        /// The rule that asks for the PIN.
        rule_id: String,
    },
    /// Put the call in a room.
    Accept(Box<DispatchResult>),
}

/// The dispatch decision with every rule that was passed over.
#[derive(Debug, Clone)]
pub struct DispatchReport {
    /// The decision, or why no rule takes the call.
    pub result: Result<DispatchDecision, RoutingError>,
    /// Rules considered and not taken, each with its reason.
    pub passed_over: Vec<PassedOver>,
}

/// Trunk and dispatch decisions together: what `explain` prints.
#[derive(Debug, Clone)]
pub struct RouteReport {
    /// The trunk step.
    pub trunk: TrunkReport,
    /// The dispatch step; `None` when the trunk step refused the call.
    pub dispatch: Option<DispatchReport>,
}

struct IndexedTrunk {
    info: Arc<SipInboundTrunkInfo>,
    numbers: Vec<String>,
    allowed_numbers: Vec<String>,
    masks: Vec<AddressMask>,
}

struct IndexedRule {
    info: Arc<SipDispatchRuleInfo>,
    priority: u32,
}

/// An immutable snapshot of the routing configuration. Cheap to share behind
/// an `Arc`; rebuild it when the store reports a change.
pub struct RoutingIndex {
    options: RoutingOptions,
    trunks: Vec<IndexedTrunk>,
    trunks_by_number: HashMap<String, Vec<usize>>,
    /// The national form of each trunk number (normalised, as a called
    /// number written without `+` normalises: `+02079460000`) to the
    /// number (`+442079460000`). Only forms that stand for one number.
    national_aliases: HashMap<String, String>,
    default_trunks: Vec<usize>,
    rules: Vec<IndexedRule>,
    rules_by_trunk: HashMap<String, Vec<usize>>,
    wildcard_rules: Vec<usize>,
    /// Stored rules that collide (only possible if written around validation).
    rule_conflicts: Vec<(usize, usize)>,
}

impl fmt::Debug for RoutingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Trunks carry passwords: print counts, never contents.
        f.debug_struct("RoutingIndex")
            .field("options", &self.options)
            .field("trunks", &self.trunks.len())
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// A rule's priority: lower is better. PIN rules before open ones, then
/// direct, individual, callee; +1000 each for no caller and no callee filter.
pub fn dispatch_rule_priority(rule: &SipDispatchRuleInfo) -> u32 {
    let has_pin = !rule_pin(rule).is_empty();
    let base = match rule.rule.as_ref().and_then(|r| r.rule.as_ref()) {
        Some(Rule::DispatchRuleDirect(_)) | None => 0,
        Some(Rule::DispatchRuleIndividual(_)) => 1,
        Some(Rule::DispatchRuleCallee(_)) => 2,
    };
    let mut priority = if has_pin { base } else { base + 100 };
    if rule.inbound_numbers.is_empty() {
        priority += 1000;
    }
    if rule.numbers.is_empty() {
        priority += 1000;
    }
    priority
}

enum TrunkCheck {
    Specific,
    Default,
    Refused(PassOverReason),
}

enum RuleCheck {
    Candidate,
    Refused(PassOverReason),
}

impl RoutingIndex {
    /// Builds the index from the full lists of inbound trunks and dispatch rules.
    pub fn new(
        trunks: impl IntoIterator<Item = SipInboundTrunkInfo>,
        rules: impl IntoIterator<Item = SipDispatchRuleInfo>,
        options: RoutingOptions,
    ) -> RoutingIndex {
        let mut trunks: Vec<SipInboundTrunkInfo> = trunks.into_iter().collect();
        trunks.sort_by(|a, b| a.sip_trunk_id.cmp(&b.sip_trunk_id));
        let mut rules: Vec<SipDispatchRuleInfo> = rules.into_iter().collect();
        rules.sort_by(|a, b| a.sip_dispatch_rule_id.cmp(&b.sip_dispatch_rule_id));

        let mut trunks_by_number: HashMap<String, Vec<usize>> = HashMap::new();
        let mut default_trunks = Vec::new();
        let indexed_trunks: Vec<IndexedTrunk> = trunks
            .into_iter()
            .enumerate()
            .map(|(i, info)| {
                let numbers: Vec<String> = info
                    .numbers
                    .iter()
                    .map(|n| normalize_number(n).into_owned())
                    .collect();
                if numbers.is_empty() {
                    default_trunks.push(i);
                }
                for n in numbers.iter().collect::<BTreeSet<_>>() {
                    trunks_by_number.entry(n.clone()).or_default().push(i);
                }
                IndexedTrunk {
                    allowed_numbers: info
                        .allowed_numbers
                        .iter()
                        .map(|n| normalize_number(n).into_owned())
                        .collect(),
                    masks: info
                        .allowed_addresses
                        .iter()
                        .filter_map(|m| AddressMask::parse(m))
                        .collect(),
                    numbers,
                    info: Arc::new(info),
                }
            })
            .collect();

        let national_aliases = national_aliases(trunks_by_number.keys());

        let mut rules_by_trunk: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard_rules = Vec::new();
        let mut first_key_owner: HashMap<_, usize> = HashMap::new();
        let mut rule_conflicts = Vec::new();
        let indexed_rules: Vec<IndexedRule> = rules
            .into_iter()
            .enumerate()
            .map(|(i, info)| {
                if info.trunk_ids.is_empty() {
                    wildcard_rules.push(i);
                }
                for t in info.trunk_ids.iter().collect::<BTreeSet<_>>() {
                    rules_by_trunk.entry(t.clone()).or_default().push(i);
                }
                for key in dispatch_rule_keys(&info) {
                    match first_key_owner.get(&key) {
                        Some(&owner) if !rule_conflicts.contains(&(owner, i)) => {
                            rule_conflicts.push((owner, i))
                        }
                        Some(_) => {}
                        None => {
                            first_key_owner.insert(key, i);
                        }
                    }
                }
                IndexedRule {
                    priority: dispatch_rule_priority(&info),
                    info: Arc::new(info),
                }
            })
            .collect();

        RoutingIndex {
            options,
            trunks: indexed_trunks,
            trunks_by_number,
            national_aliases,
            default_trunks,
            rules: indexed_rules,
            rules_by_trunk,
            wildcard_rules,
            rule_conflicts,
        }
    }

    /// An index with nothing in it.
    pub fn empty(options: RoutingOptions) -> RoutingIndex {
        RoutingIndex::new(Vec::new(), Vec::new(), options)
    }

    /// The options the index was built with.
    pub fn options(&self) -> RoutingOptions {
        self.options
    }

    /// Number of inbound trunks indexed.
    pub fn trunk_count(&self) -> usize {
        self.trunks.len()
    }

    /// Number of dispatch rules indexed.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Picks the trunk for a call (the fast path: only trunks for the called
    /// number and wildcard trunks are looked at, and only those are explained).
    pub fn match_trunk(&self, call: &CallInput) -> TrunkReport {
        let called = self.called_number(&call.to_user);
        let mut candidates: Vec<usize> = self.default_trunks.clone();
        if let Some(list) = self.trunks_by_number.get(called.as_ref()) {
            candidates.extend(list);
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.match_trunk_among(call, &candidates)
    }

    /// Like [`RoutingIndex::match_trunk`] but explains every trunk, including
    /// those for other numbers. Same decision, slower.
    pub fn match_trunk_explained(&self, call: &CallInput) -> TrunkReport {
        let all: Vec<usize> = (0..self.trunks.len()).collect();
        self.match_trunk_among(call, &all)
    }

    /// Every network an inbound trunk's `allowed_addresses` admits: the
    /// carriers the operator named, exempt from the SIP edge's per-source
    /// limits and bans.
    pub fn allowed_networks(&self) -> Vec<ipnet::IpNet> {
        let mut networks: Vec<ipnet::IpNet> = self
            .trunks
            .iter()
            .flat_map(|t| &t.masks)
            .filter_map(|mask| match mask {
                AddressMask::Ip(ip) => Some(ipnet::IpNet::from(*ip)),
                AddressMask::Net(net) => Some(*net),
                AddressMask::Host(_) => None,
            })
            .collect();
        networks.sort();
        networks.dedup();
        networks
    }

    /// Explains at most `limit` trunks (in index order) and says how many
    /// more there are: what a refused call can afford to log. A refusal
    /// must cost the same whatever the number of trunks, or one packet
    /// from a scanner costs O(trunks) work and log.
    pub fn explain_some_trunks(&self, call: &CallInput, limit: usize) -> (TrunkReport, usize) {
        let shown: Vec<usize> = (0..self.trunks.len().min(limit)).collect();
        let more = self.trunks.len().saturating_sub(shown.len());
        (self.match_trunk_among(call, &shown), more)
    }

    /// The trunk number a called number (To or Request-URI user) stands
    /// for: its normalised form when a trunk lists that, else the E.164
    /// number whose national form it is (a carrier sending `02079460000`
    /// for `+442079460000`). Two map lookups whatever the number of trunks.
    fn called_number<'a>(&'a self, user: &'a str) -> Cow<'a, str> {
        let called = normalize_number(user);
        // A leading `+` says the number is international as written: its
        // digits are no national form (`+2025550123` is Egypt's, whatever
        // `2025550123` is in the US).
        if user.starts_with('+') || self.trunks_by_number.contains_key(called.as_ref()) {
            return called;
        }
        match self.national_aliases.get(called.as_ref()) {
            Some(number) => Cow::Borrowed(number.as_str()),
            None => called,
        }
    }

    fn check_trunk(&self, trunk: &IndexedTrunk, call: &CallInput, called: &str) -> TrunkCheck {
        let number_matches = trunk.numbers.iter().any(|n| n == called);
        if !trunk.numbers.is_empty() && !number_matches {
            let ruri = self.called_number(&call.request_uri_user);
            let ruri_matches =
                !call.request_uri_user.is_empty() && trunk.numbers.iter().any(|n| *n == ruri);
            return TrunkCheck::Refused(PassOverReason::CalledNumberNotInTrunk {
                called: call.to_user.clone(),
                request_uri_would_match: ruri_matches.then(|| call.request_uri_user.clone()),
            });
        }
        if !trunk.allowed_numbers.is_empty() {
            let caller = normalize_number(&call.from_user);
            let allowed = trunk.allowed_numbers.iter().any(|n| *n == caller)
                || trunk.info.allowed_numbers.contains(&call.from_user);
            if !allowed {
                return TrunkCheck::Refused(PassOverReason::CallerNotAllowed {
                    caller: call.from_user.clone(),
                });
            }
        }
        if let Some(source_ip) = call.source_ip {
            // A trunk whose entries were all unparseable fails closed, where
            // LiveKit would accept every source.
            if !trunk.info.allowed_addresses.is_empty()
                && !trunk
                    .masks
                    .iter()
                    .any(|m| m.matches(source_ip, &call.from_host))
            {
                return TrunkCheck::Refused(PassOverReason::SourceNotAllowed {
                    source_ip,
                    from_host: call.from_host.clone(),
                });
            }
        }
        if trunk.numbers.is_empty() {
            TrunkCheck::Default
        } else {
            TrunkCheck::Specific
        }
    }

    fn match_trunk_among(&self, call: &CallInput, candidates: &[usize]) -> TrunkReport {
        let called = self.called_number(&call.to_user);
        let mut specific = Vec::new();
        let mut default = Vec::new();
        let mut passed_over = Vec::new();
        for &i in candidates {
            let trunk = &self.trunks[i];
            match self.check_trunk(trunk, call, &called) {
                TrunkCheck::Specific => specific.push(i),
                TrunkCheck::Default => default.push(i),
                TrunkCheck::Refused(reason) => {
                    passed_over.push(trunk_passed_over(&trunk.info, reason))
                }
            }
        }
        let ambiguous = |list: &[usize], passed_over: &mut Vec<PassedOver>| {
            for &i in list {
                passed_over.push(trunk_passed_over(
                    &self.trunks[i].info,
                    PassOverReason::Ambiguous,
                ));
            }
        };
        let specific = self.prefer_caller_specific(specific, &mut passed_over);
        let default = self.prefer_caller_specific(default, &mut passed_over);
        let result = if specific.len() > 1 {
            ambiguous(&specific, &mut passed_over);
            Err(RoutingError::MultipleTrunks(call.to_user.clone()))
        } else if let Some(&winner) = specific.first() {
            let winner = &self.trunks[winner].info;
            for &i in &default {
                let reason = PassOverReason::LostToSpecificTrunk {
                    winner: winner.sip_trunk_id.clone(),
                };
                passed_over.push(trunk_passed_over(&self.trunks[i].info, reason));
            }
            Ok(TrunkMatch {
                trunk: Some(winner.clone()),
                kind: TrunkMatchKind::Specific,
            })
        } else if default.len() > 1 {
            ambiguous(&default, &mut passed_over);
            Err(RoutingError::MultipleDefaultTrunks(call.to_user.clone()))
        } else if let Some(&winner) = default.first() {
            Ok(TrunkMatch {
                trunk: Some(self.trunks[winner].info.clone()),
                kind: TrunkMatchKind::Default,
            })
        } else if self.options.allow_unmatched_calls {
            Ok(TrunkMatch {
                trunk: None,
                kind: TrunkMatchKind::Unmatched,
            })
        } else {
            Err(RoutingError::NoTrunk(call.to_user.clone()))
        };
        TrunkReport {
            result,
            passed_over,
        }
    }

    /// Among trunks that all take a call, one that lists the caller in
    /// `allowed_numbers` beats those that accept any caller.
    ///
    /// LiveKit's validation accepts "number X, any caller" beside "number X,
    /// caller Y" but its matcher then refuses every call from Y as ambiguous;
    /// here the trunk naming Y takes it. Validation guarantees at most one
    /// trunk per (number, caller) key, so this never hides a real ambiguity.
    fn prefer_caller_specific(
        &self,
        matched: Vec<usize>,
        passed_over: &mut Vec<PassedOver>,
    ) -> Vec<usize> {
        if matched.len() < 2 {
            return matched;
        }
        let (listing, open): (Vec<usize>, Vec<usize>) = matched
            .iter()
            .partition(|&&i| !self.trunks[i].allowed_numbers.is_empty());
        let [winner] = listing.as_slice() else {
            return matched;
        };
        let winner_id = &self.trunks[*winner].info.sip_trunk_id;
        for i in open {
            let reason = PassOverReason::LostToCallerSpecificTrunk {
                winner: winner_id.clone(),
            };
            passed_over.push(trunk_passed_over(&self.trunks[i].info, reason));
        }
        listing
    }

    /// Picks the dispatch rule for a call that arrived on `trunk` (from
    /// [`RoutingIndex::match_trunk`]) and evaluates it. Run it again with
    /// `call.pin` or `call.no_pin` set after a [`DispatchDecision::RequestPin`].
    pub fn dispatch(
        &self,
        call: &CallInput,
        trunk: &TrunkMatch,
        rng: &mut dyn RandomSource,
    ) -> DispatchReport {
        let trunk_info = trunk.trunk.as_deref();
        let mut candidates: Vec<usize> = self.wildcard_rules.clone();
        if let Some(list) = trunk_info.and_then(|t| self.rules_by_trunk.get(&t.sip_trunk_id)) {
            candidates.extend(list);
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.dispatch_among(call, trunk_info, &candidates, rng)
    }

    /// Like [`RoutingIndex::dispatch`] but explains every rule, including
    /// those for other trunks. Same decision, slower.
    pub fn dispatch_explained(
        &self,
        call: &CallInput,
        trunk: &TrunkMatch,
        rng: &mut dyn RandomSource,
    ) -> DispatchReport {
        let all: Vec<usize> = (0..self.rules.len()).collect();
        self.dispatch_among(call, trunk.trunk.as_deref(), &all, rng)
    }

    fn check_rule(
        rule: &SipDispatchRuleInfo,
        call: &CallInput,
        trunk: Option<&SipInboundTrunkInfo>,
    ) -> RuleCheck {
        if !rule.trunk_ids.is_empty()
            && !trunk.is_some_and(|t| rule.trunk_ids.contains(&t.sip_trunk_id))
        {
            return RuleCheck::Refused(PassOverReason::TrunkNotInRule {
                trunk_id: trunk.map(|t| t.sip_trunk_id.clone()),
            });
        }
        if !rule.inbound_numbers.is_empty() && !rule.inbound_numbers.contains(&call.from_user) {
            return RuleCheck::Refused(PassOverReason::CallerNotInRule {
                caller: call.from_user.clone(),
            });
        }
        if !rule.numbers.is_empty() && !rule.numbers.contains(&call.to_user) {
            return RuleCheck::Refused(PassOverReason::CalledNotInRule {
                called: call.to_user.clone(),
            });
        }
        let pin = rule_pin(rule);
        if call.no_pin {
            if !pin.is_empty() {
                return RuleCheck::Refused(PassOverReason::PinRequiredButSkipped);
            }
        } else if let Some(entered) = call.entered_pin() {
            if pin.is_empty() {
                return RuleCheck::Refused(PassOverReason::OpenRuleButPinEntered);
            }
            if pin != entered {
                return RuleCheck::Refused(PassOverReason::WrongPin);
            }
        }
        RuleCheck::Candidate
    }

    fn rule_is_relevant(rule: &SipDispatchRuleInfo, trunk: Option<&SipInboundTrunkInfo>) -> bool {
        rule.trunk_ids.is_empty() || trunk.is_some_and(|t| rule.trunk_ids.contains(&t.sip_trunk_id))
    }

    fn dispatch_among(
        &self,
        call: &CallInput,
        trunk: Option<&SipInboundTrunkInfo>,
        candidates: &[usize],
        rng: &mut dyn RandomSource,
    ) -> DispatchReport {
        let mut passed_over = Vec::new();
        if self.rules.is_empty() {
            return DispatchReport {
                result: Err(RoutingError::NoDispatchRulesDefined),
                passed_over,
            };
        }
        // Stored rules that collide make the outcome depend on storage order:
        // refuse, as LiveKit does, but name the pair.
        let conflict = self.rule_conflicts.iter().find(|(a, b)| {
            let relevant = |i: usize| Self::rule_is_relevant(&self.rules[i].info, trunk);
            relevant(*a) && relevant(*b)
        });
        if let Some(&(a, b)) = conflict {
            let (ra, rb) = (&self.rules[a].info, &self.rules[b].info);
            passed_over.push(rule_passed_over(
                rb,
                PassOverReason::Conflicting {
                    other: ra.sip_dispatch_rule_id.clone(),
                },
            ));
            passed_over.push(rule_passed_over(
                ra,
                PassOverReason::Conflicting {
                    other: rb.sip_dispatch_rule_id.clone(),
                },
            ));
            return DispatchReport {
                result: Err(dispatch_conflict_error(ra)),
                passed_over,
            };
        }

        let mut specific = Vec::new();
        let mut default = Vec::new();
        for &i in candidates {
            let rule = &self.rules[i];
            match Self::check_rule(&rule.info, call, trunk) {
                RuleCheck::Candidate if rule.info.trunk_ids.is_empty() => default.push(i),
                RuleCheck::Candidate => specific.push(i),
                RuleCheck::Refused(reason) => {
                    passed_over.push(rule_passed_over(&rule.info, reason))
                }
            }
        }
        let order = |&i: &usize| {
            let r = &self.rules[i];
            (
                r.priority,
                rule_room(&r.info),
                r.info.sip_dispatch_rule_id.as_str(),
            )
        };
        let best = specific
            .iter()
            .min_by_key(|i| order(i))
            .or_else(|| default.iter().min_by_key(|i| order(i)));
        let Some(&best) = best else {
            let err = if trunk.is_none() {
                RoutingError::NoTrunkOrDispatchRule(call.to_user.clone())
            } else {
                RoutingError::NoDispatchRule(call.to_user.clone())
            };
            return DispatchReport {
                result: Err(err),
                passed_over,
            };
        };
        let winner = &self.rules[best];
        let winner_is_specific = !winner.info.trunk_ids.is_empty();
        for &i in specific.iter().chain(&default) {
            if i == best {
                continue;
            }
            let rule = &self.rules[i];
            let reason = if winner_is_specific && rule.info.trunk_ids.is_empty() {
                PassOverReason::LostToTrunkRule {
                    winner: winner.info.sip_dispatch_rule_id.clone(),
                }
            } else {
                PassOverReason::LowerPriority {
                    winner: winner.info.sip_dispatch_rule_id.clone(),
                    priority: rule.priority,
                    winner_priority: winner.priority,
                }
            };
            passed_over.push(rule_passed_over(&rule.info, reason));
        }

        let needs_pin =
            !rule_pin(&winner.info).is_empty() && call.entered_pin().is_none() && !call.no_pin;
        let result = if needs_pin {
            Ok(DispatchDecision::RequestPin {
                rule_id: winner.info.sip_dispatch_rule_id.clone(),
            })
        } else {
            match evaluate_dispatch(call, trunk, &winner.info, rng) {
                Some(result) => Ok(DispatchDecision::Accept(Box::new(result))),
                None => Err(RoutingError::MissingRule),
            }
        };
        DispatchReport {
            result,
            passed_over,
        }
    }

    /// Both steps, fast path: the trunk, then (if one was found or unmatched
    /// calls are allowed) the rule. Digest auth is the caller's business
    /// between the two steps; this does not check it.
    pub fn route(&self, call: &CallInput, rng: &mut dyn RandomSource) -> RouteReport {
        let trunk = self.match_trunk(call);
        let dispatch = trunk
            .result
            .as_ref()
            .ok()
            .map(|m| self.dispatch(call, m, rng));
        RouteReport { trunk, dispatch }
    }

    /// Both steps, explaining every trunk and rule: the answer to "why did
    /// this call (not) match".
    pub fn explain(&self, call: &CallInput, rng: &mut dyn RandomSource) -> RouteReport {
        let trunk = self.match_trunk_explained(call);
        let dispatch = trunk
            .result
            .as_ref()
            .ok()
            .map(|m| self.dispatch_explained(call, m, rng));
        RouteReport { trunk, dispatch }
    }
}

/// The national forms of the last index's trunk numbers (`None`: none).
///
/// phonenumber takes 10 to 30 µs a number, even in a release build (its
/// regular expressions sit behind one process-wide lock): 0.1 to 0.3 s for
/// an index of 10,000 trunk numbers. The index is rebuilt on every change
/// and almost all numbers are the same as last time, so the last build's
/// answers are kept for the next (a rebuild after one change: about 20 ms).
/// The memo holds the latest build's numbers only, so it never outgrows
/// the index.
static NATIONAL_ALIAS_MEMO: Mutex<Option<HashMap<String, Option<String>>>> = Mutex::new(None);

/// The national forms of trunk numbers (`numbers`, normalised), keyed as a
/// called number in that form normalises, each to the one number it stands
/// for. A form that two numbers share (the same digits dialled nationally in
/// two countries) says nothing about which is meant and is left out, so an
/// alias never makes a call ambiguous. Built once per index, never per call.
fn national_aliases<'a>(numbers: impl Iterator<Item = &'a String>) -> HashMap<String, String> {
    let mut memo = NATIONAL_ALIAS_MEMO
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let previous = memo.take().unwrap_or_default();
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    let mut aliases: HashMap<String, Option<String>> = HashMap::new();
    for number in numbers {
        let national = match previous.get(number) {
            Some(national) => national.clone(),
            None => national_alias(number),
        };
        known.insert(number.clone(), national.clone());
        let Some(national) = national else {
            continue;
        };
        aliases
            .entry(normalize_number(&national).into_owned())
            .and_modify(|seen| {
                if seen.as_deref() != Some(number.as_str()) {
                    *seen = None;
                }
            })
            .or_insert_with(|| Some(number.clone()));
    }
    *memo = Some(known);
    aliases
        .into_iter()
        .filter_map(|(key, number)| Some((key, number?)))
        .collect()
}

fn trunk_passed_over(trunk: &SipInboundTrunkInfo, reason: PassOverReason) -> PassedOver {
    PassedOver {
        kind: ObjectKind::Trunk,
        id: trunk.sip_trunk_id.clone(),
        name: trunk.name.clone(),
        reason,
    }
}

fn rule_passed_over(rule: &SipDispatchRuleInfo, reason: PassOverReason) -> PassedOver {
    PassedOver {
        kind: ObjectKind::DispatchRule,
        id: rule.sip_dispatch_rule_id.clone(),
        name: rule.name.clone(),
        reason,
    }
}

impl fmt::Display for RouteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.trunk.result {
            Ok(m) => match (&m.trunk, m.kind) {
                (Some(t), kind) => {
                    let how = if kind == TrunkMatchKind::Specific {
                        "lists the called number"
                    } else {
                        "wildcard"
                    };
                    write!(f, "trunk: {} ({how})", t.sip_trunk_id)?;
                    if m.digest_auth().is_some() {
                        write!(f, ", digest auth required")?;
                    }
                    writeln!(f)?;
                }
                (None, _) => writeln!(f, "trunk: none matched; allowed by allow_unmatched_calls")?,
            },
            Err(e) => writeln!(f, "refused at trunk matching ({}): {e}", e.code())?,
        }
        for p in &self.trunk.passed_over {
            writeln!(f, "  {p}")?;
        }
        let Some(dispatch) = &self.dispatch else {
            return Ok(());
        };
        match &dispatch.result {
            Ok(DispatchDecision::RequestPin { rule_id }) => {
                writeln!(f, "rule: {rule_id}, asks the caller for a PIN")?
            }
            Ok(DispatchDecision::Accept(r)) => writeln!(
                f,
                "rule: {} -> room {:?}, identity {:?}, name {:?}",
                r.rule_id, r.room_name, r.participant_identity, r.participant_name
            )?,
            Err(e) => writeln!(f, "refused at dispatch ({}): {e}", e.code())?,
        }
        for p in &dispatch.passed_over {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
