export { FaultEngine, type FaultContext, type FaultFired, type FaultRuleView, type FaultVerdict } from './engine';
export { FAULT_OPS, FAULT_RULE_SCHEMA, FaultSpecError, validateFaultRule, type FaultAction, type FaultMatch, type FaultOp, type FaultRuleSpec, type FaultTrigger } from './spec';
