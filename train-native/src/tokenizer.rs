//! Byte-level BPE tokenizer (GPT-2 style bytes-to-unicode pre-tokenizer) trained with the
//! `tokenizers` crate, with `<s>` / `</s>` as special tokens 0 and 1. The saved tokenizer.json
//! is what the HF export ships, so transformers and the runtime tokenize exactly as training did.

use crate::error::{Result, TrainError};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer,
    TokenizerBuilder,
};

pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
/// 256 byte symbols + the two special tokens: below this a byte-level BPE cannot cover all input.
pub const MIN_VOCAB: usize = 258;

fn tk_err(context: &str) -> impl FnOnce(tokenizers::Error) -> TrainError + '_ {
    move |e| TrainError::Tokenizer { context: context.to_string(), message: e.to_string() }
}

/// Train a byte-level BPE with `vocab_size` entries on `texts`; returns tokenizer.json text.
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<String> {
    if vocab_size < MIN_VOCAB {
        return Err(TrainError::config(
            "tokenizer_vocab",
            vocab_size,
            format!("a byte-level BPE needs at least {MIN_VOCAB} entries (256 bytes + <s> + </s>)"),
        ));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![AddedToken::from(BOS, true), AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    // `<s> $A`: encode(text, add_special_tokens=True) starts with BOS, as every training document does.
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A {BOS} $B")))
        .map_err(|e| TrainError::Tokenizer { context: "post-processor".into(), message: e.to_string() })?
        .special_tokens(vec![(BOS, 0u32)])
        .build()
        .map_err(|e| TrainError::Tokenizer { context: "post-processor".into(), message: e.to_string() })?;
    let mut tk = TokenizerBuilder::<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
        .with_post_processor(Some(post.into()))
        .with_decoder(Some(ByteLevelDecoder::default().into()))
        .build()
        .map_err(tk_err("build"))?;
    tk.train(&mut trainer, texts.iter()).map_err(tk_err("train"))?;
    let json = tk.to_string(false).map_err(tk_err("serialize"))?;
    // Round-trip through the generic Tokenizer to check the special ids we rely on.
    let t = Tok::from_json(&json)?;
    if t.bos != 0 || t.eos != 1 {
        return Err(TrainError::Tokenizer {
            context: "train".into(),
            message: format!("special tokens got ids {} and {}, expected 0 and 1", t.bos, t.eos),
        });
    }
    Ok(json)
}

/// A loaded tokenizer with its BOS/EOS ids.
pub struct Tok {
    pub inner: Tokenizer,
    pub bos: u32,
    pub eos: u32,
}

impl Tok {
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: Tokenizer = json.parse().map_err(tk_err("load tokenizer.json"))?;
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| TrainError::Tokenizer {
                context: "load tokenizer.json".into(),
                message: format!("special token {t} is missing; the trainer needs {BOS} and {EOS}"),
            })
        };
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        Ok(Tok { inner, bos, eos })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, false).map_err(tk_err("encode"))?.get_ids().to_vec())
    }

    /// Encode many documents in parallel (no special tokens).
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let enc = self.inner.encode_batch(texts.to_vec(), false).map_err(tk_err("encode"))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(tk_err("decode"))
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
