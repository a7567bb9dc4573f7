//! Call control for switchboard: the B2BUA between SIP legs and rooms.
