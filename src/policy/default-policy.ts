// The built-in policy as text. policy/default.yaml is the same text as a readable file;
// test/unit/policy/default-policy.test.ts fails when the two differ. Embedded so that the pure
// policy module and the queue workers need no file I/O to get it.

export const DEFAULT_POLICY_TEXT = `# Tessera's built-in policy: what the daemon enforces when it is given no policy file.
# The text is also compiled into the daemon (src/policy/default-policy.ts; a unit test keeps
# the two identical). docs/policy.md explains the language.
#
# Two PUs may talk iff both run under Tessera and their user labels are equal: the same
# set of key=value labels, ignoring the system labels (keys starting with '@') that
# monitors add. Everything else, including every peer without a Tessera identity, matches
# no rule and falls through to the default: reject.
version: 1
name: default (same user labels)
rules:
  - id: same-labels
    description: PUs with equal user labels may connect, on every port, in both directions
    sameLabels: true
    action: allow
`;
