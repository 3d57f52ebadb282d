//! `TrentService.GenerateDataKey` and `Decrypt`: the KMS calls of encrypted sessions, served by
//! the emulator's [`LocalKms`](crate::emulator::kms::LocalKms).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{ApiError, required};
use crate::emulator::State;
use crate::emulator::kms::{KmsError, MAX_DATA_KEY_BYTES};

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        let status = if e.code == "KMSInternalException" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            code: e.code,
            message: e.message,
        }
    }
}

/// GenerateDataKey's input (`GrantTokens`, `DryRun` and `Recipient` are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GenerateDataKeyRequest {
    key_id: Option<String>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
}

/// GenerateDataKey's output; blobs are base64, as awsJson1_1 writes them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct GenerateDataKeyResponse {
    ciphertext_blob: String,
    plaintext: String,
    key_id: String,
}

/// `TrentService.GenerateDataKey`: a fresh data key, sealed to the key and the context.
pub(super) fn generate_data_key(
    state: &Arc<State>,
    request: GenerateDataKeyRequest,
) -> Result<GenerateDataKeyResponse, ApiError> {
    let key_id = required(request.key_id, "keyId")?;
    let bytes = match (request.number_of_bytes, request.key_spec.as_deref()) {
        (Some(n), None) => usize::try_from(n).unwrap_or(0),
        (None, Some("AES_256")) => 32,
        (None, Some("AES_128")) => 16,
        (None, Some(other)) => {
            return Err(ApiError::constraint(
                &format!("'{other}'"),
                "keySpec",
                "Member must satisfy enum value set: [AES_256, AES_128]",
            ));
        }
        _ => {
            return Err(ApiError::validation(
                "Specify either KeySpec or NumberOfBytes (not both) in a GenerateDataKey request",
            ));
        }
    };
    if !(1..=MAX_DATA_KEY_BYTES).contains(&bytes) {
        return Err(ApiError::constraint(
            &format!("'{}'", request.number_of_bytes.unwrap_or_default()),
            "numberOfBytes",
            &format!("Member must have value between 1 and {MAX_DATA_KEY_BYTES}"),
        ));
    }
    let context = request.encryption_context.unwrap_or_default();
    let (plaintext, blob, arn) = state.kms.generate_data_key(&key_id, bytes, &context)?;
    Ok(GenerateDataKeyResponse {
        ciphertext_blob: STANDARD.encode(blob),
        plaintext: STANDARD.encode(plaintext),
        key_id: arn,
    })
}

/// Decrypt's input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DecryptRequest {
    ciphertext_blob: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    key_id: Option<String>,
}

/// Decrypt's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DecryptResponse {
    plaintext: String,
    key_id: String,
    encryption_algorithm: &'static str,
}

/// `TrentService.Decrypt`: opens a blob made by GenerateDataKey with the same context.
pub(super) fn decrypt(
    state: &Arc<State>,
    request: DecryptRequest,
) -> Result<DecryptResponse, ApiError> {
    let blob = required(request.ciphertext_blob, "ciphertextBlob")?;
    let blob = STANDARD.decode(blob.trim()).map_err(|e| {
        ApiError::new(
            "SerializationException",
            format!("CiphertextBlob is not base64: {e}"),
        )
    })?;
    let context = request.encryption_context.unwrap_or_default();
    let (plaintext, arn) = state.kms.decrypt(&blob, &context)?;
    if let Some(key_id) = request.key_id
        && state.kms.arn_of(&key_id)? != arn
    {
        return Err(ApiError::new(
            "IncorrectKeyException",
            format!("The key {key_id} did not encrypt this ciphertext."),
        ));
    }
    Ok(DecryptResponse {
        plaintext: STANDARD.encode(plaintext),
        key_id: arn,
        encryption_algorithm: "SYMMETRIC_DEFAULT",
    })
}
