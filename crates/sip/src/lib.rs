//! SIP for switchboard: message parsing, transports, transactions, dialogs
//! and digest authentication. Knows nothing of trunks, rooms or media.
