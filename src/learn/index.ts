// Learn mode, pure part: the edge table the datapath feeds, the policy suggestion and the
// replay of observed edges through a policy (docs/learning.md).

export { EdgeTable, parseTable, connections, edgeKey, DEFAULT_MAX_EDGES, MAX_PUS, MAX_LABELS, type Edge, type EdgeTableJson, type Side, type Observed } from './edges.js';
export { suggest, type Suggestion, type SuggestedRule, type SuggestOptions } from './suggest.js';
export { generalize, type Group } from './generalize.js';
export { aggregateCidrs } from './cidrs.js';
export { diff, compare, judge, describeEdge, type DiffResult, type EdgeVerdict, type Change } from './diff.js';
