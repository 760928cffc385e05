// Types of the `cria` package (hand-written; the wasm core's own types are in dist/cria_web.d.ts).

/** Where a model comes from: "bundled" (the default model shipped in this package), the URL of a
 * model folder (a Hugging Face `https://huggingface.co/ORG/NAME/resolve/main/` folder: config.json,
 * tokenizer.json, model.safetensors or its shards) or of a `.gguf` file, the user's own files
 * (a folder's files, or one .gguf), or a URL with a manifest giving each file's size and sha256. */
export type ModelSource =
  | "bundled"
  | string
  | URL
  | File
  | File[]
  | FileList
  | { url: string | URL; name?: string; manifest?: Manifest | true };

/** Expected files of a model folder; downloads are checked against it. */
export interface Manifest {
  files: Record<string, { size: number; sha256?: string }>;
}

/** Device memory a model takes (GPU memory, or the wasm heap on the CPU), in bytes, known from its headers before any upload. */
export interface MemoryPlan {
  context: number;
  /** Weight matrices by stored type, e.g. { bf16: 269484032 }. */
  weights: Record<string, number>;
  /** f32 norm vectors. */
  norms: number;
  kv_cache: number;
  kv_cache_type: "f16" | "f32";
  activations: number;
  total: number;
}

export interface LoadProgress {
  /** download: bytes fetched; cache: bytes read from the browser's cache; plan: once, before the
   * upload, the GPU memory the model will take (`memory`; `total` is memory.total); upload:
   * tensor bytes on the GPU; compile: the kernels compiled by a first run (0 of 1, then 1 of 1). */
  phase: "download" | "cache" | "plan" | "upload" | "compile";
  loaded: number;
  /** Unknown for downloads whose size the server does not announce. */
  total?: number;
  /** The file downloaded or read from the cache, or the tensor just uploaded (upload phase). */
  file?: string;
  /** Set on the last event of each download: whether the verified file went into the browser's
   * cache. A cache that refuses (quota, private mode, an internal error) never fails the load:
   * the file is used uncached, `reason` says why, and the next load tries again. */
  cached?: boolean;
  reason?: string;
  /** The plan phase's figures. */
  memory?: MemoryPlan;
}

export interface LoadOptions {
  onProgress?: (progress: LoadProgress) => void;
  /** Run the engine in a dedicated Web Worker (default true) or on this thread. */
  worker?: boolean;
  /** Where the model computes: "auto" (default) takes WebGPU unless the browser has none, offers no
   * adapter, or only a software one (SwiftShader, llvmpipe, WARP); then the CPU kernels, compiled to
   * wasm32 SIMD, run in the worker on one thread. "gpu" rejects (code no-webgpu) without WebGPU. */
  device?: "auto" | "gpu" | "cpu";
  /** Tokens of context to allocate (default: 4096, or the model's maximum if smaller). */
  context?: number;
  /** Convert weights while loading (default: each tensor keeps its file's type; BF16 stays BF16). */
  dtype?: "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q4_k" | "q5_k" | "q6_k";
  /** Element type of the KV cache (default f16). */
  kvCache?: "f16" | "f32";
}

export interface ModelInfo {
  name: string;
  device: "gpu" | "cpu";
  parameters: number;
  weight_bytes: number;
  weight_types: string;
  context: number;
  /** The device memory it holds. */
  memory: MemoryPlan;
  vocab_size: number;
  chat_template: boolean;
}

export interface GenerateOptions {
  maxTokens?: number;
  /** 0 is greedy decoding. Unset options take the model's generation_config.json. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  /** Generation ends before the first occurrence of any of these. */
  stop?: string | string[];
  signal?: AbortSignal;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  prompt_tokens: number;
  finish: "length" | "eos" | "stop";
  /** Seconds from the call to the first generated token. */
  time_to_first_token: number;
  decode_tokens_per_second: number;
}

/** Streamed text; `result` resolves when the generation ends (rejects with an AbortError when aborted). */
export interface Generation extends AsyncIterable<string> {
  result: Promise<GenerationResult>;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | { type: "text"; text: string }[];
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string }; finish_reason: "stop" | "length"; logprobs: null }[];
  usage: Usage;
  /** Not part of OpenAI's shape. */
  x_cria: CriaTimings;
}

export interface CriaTimings {
  time_to_first_token: number;
  decode_tokens_per_second: number;
  finish: "length" | "eos" | "stop";
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; finish_reason: "stop" | "length" | null; logprobs: null }[];
  /** On the last chunk. */
  usage?: Usage;
  /** On the last chunk; not part of OpenAI's shape. */
  x_cria?: CriaTimings;
}

export declare class CriaError extends Error {
  /** no-webgpu, no-worker, http, network, truncated, checksum, cache, bad-model, bad-source, too-large,
   * device-lost, cancelled, no-model, unsupported, bad-request, worker, runtime. */
  code: string;
}

export declare class Cria {
  static load(source?: ModelSource, options?: LoadOptions): Promise<Cria>;
  /** The loaded model. */
  info: ModelInfo | null;
  /** Where the model computes (see LoadOptions.device). */
  readonly device: "gpu" | "cpu";
  /** Which device and why it was chosen; for a GPU, the WebGPU adapter, features and limits. */
  readonly adapter: string;
  /** Replaces the loaded model. On failure `info` says what is loaded: the previous model
   * when the new files never reached the GPU (bad URL, cut-off download, corrupt header), else null. */
  load(source?: ModelSource, options?: LoadOptions): Promise<ModelInfo>;
  generate(prompt: string, options?: GenerateOptions): Generation;
  chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  /** The wasm heap's high-water mark: on a GPU the weights pass through it one tensor at a time; on the CPU they live in it. */
  memory(): Promise<{ wasm_heap_bytes: number }>;
  /** Destroys the GPU device as a driver reset would; later calls reject until load(). Nothing on the CPU. */
  destroyDevice(): Promise<void>;
  dispose(): void;
}
