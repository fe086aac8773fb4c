"""Energy loans in a residential cooperative (Chakraborty, Baarslag and Kaisers): model, negotiation, simulation, fast paths.

Entry points: `simulation.run(agents, Settings(...))`, `cases.case(1|2|3)`,
`fast.evaluate(EvalBatch)` (Algorithm 3 for a batch of agents), `contracts.negotiate`.
Design notes and choices: docs/negotiation-cooperative.md.
"""
