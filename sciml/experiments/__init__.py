"""The paper experiments: harnesses shared by `problems/`, `benchmarks/` and the
notebooks, built on the families' public parts (the one room of sciml that is not
library). Import a module by name, e.g. `sciml.experiments.node`.

- `node`: the neural-ODE/SDE experiments of Pal et al. (digits, spiral ODE and SDE);
- `kinetics`: the KINN paper's benchmark mechanisms, scenarios and problems;
- `ensemble`: ensemble-Kalman training against Adam on regression problems;
- `magnet`: the Kronmüller nucleation-field family of eigenproblems.
"""
