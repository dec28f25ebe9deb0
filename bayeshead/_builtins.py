"""The built-in registry entries: ``family -> {name: (module that registers it, description)}``.

Kept as plain strings so that listing them imports nothing heavy; the module is imported
the first time the entry is used. Add a line here when you add a built-in component.
"""

BUILTINS: dict[str, dict[str, tuple[str, str]]] = {
    "heads": {
        "deterministic": (
            "bayeshead.heads.deterministic",
            "Softmax linear head: MLE, or MAP with weight decay (a Gaussian prior on the weights)",
        ),
    },
    "adapters": {},  # "lora", "polar": added with their modules (adapters/)
    "optimizers": {
        "adamw": (
            "bayeshead.manifolds.adamw",
            "AdamW for Euclidean parameters; refuses Stiefel factors unless told to treat them as free",
        ),
    },
    "tasks": {},
}
