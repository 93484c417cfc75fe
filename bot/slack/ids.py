"""Every action_id, callback_id and block_id the bot uses, in one place.

Form block_ids equal the service's field names (``vendor_id``, ``ip_addresses``…), so an ``InvalidInput``'s
errors map straight onto ``ack(response_action="errors", errors=...)``.
"""

import re

COMMAND = "/coupang-key"

# buttons (action_id); the button's value carries the vendor ID or request ID
EDIT_LINKING = "edit_linking"
REQUEST_REISSUE = "request_reissue"
VERIFY_KEY = "verify_key"
STATUS_NEXT_PAGE = "status_next_page"
DELETE_KEY = "delete_key"
EXPAND_KEY = "expand_key"  # a key's line in status or App Home → its full entry
APPROVE_REISSUE = "approve_reissue"
DENY_REISSUE = "deny_reissue"
ENTER_NEW_KEY = "enter_new_key"


def for_key(action_id: str, vendor_id: str) -> str:
    """One action_id per key, for several of the same button in one actions block (Slack wants them unique)."""
    return f"{action_id}:{vendor_id}"


def any_key(action_id: str) -> re.Pattern[str]:
    """Matches ``action_id`` itself and every :func:`for_key` variant of it (for ``app.action``)."""
    return re.compile(rf"^{re.escape(action_id)}(:.+)?$")


# modals (callback_id)
REGISTER_MODAL = "register_key"
EDIT_LINKING_MODAL = "edit_linking_info"
REISSUE_REQUEST_MODAL = "reissue_request"
NEW_KEY_MODAL = "new_key"
DENY_MODAL = "deny_reissue_reason"

# key rollout (bot/slack/rollout.py): push buttons carry "VENDOR_ID" (every consumer not holding the key) or
# "VENDOR_ID NAME"; add/remove buttons carry the vendor ID
PUSH_CONSUMERS = "push_consumers"
ADD_CONSUMER = "add_consumer"
REMOVE_CONSUMER = "remove_consumer"
CONSUMER_ADD_MODAL = "consumer_add"
CONSUMER_REMOVE_MODAL = "consumer_remove"
# the two-person rule: "Change target" carries the vendor ID, Approve / Deny on a proposal its id
RETARGET_CONSUMER = "retarget_consumer"
CONSUMER_RETARGET_MODAL = "consumer_retarget"
APPROVE_CONSUMER = "approve_consumer"  # opens CONSUMER_APPROVE_MODAL: the target, shown to the approver only
DENY_CONSUMER = "deny_consumer"
CONSUMER_APPROVE_MODAL = "consumer_approve"
