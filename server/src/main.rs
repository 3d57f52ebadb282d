//! The `porthole` command line: parses flags and hands off to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use porthole::ssm::codec;

/// Porthole: a web gateway to AWS Session Manager shells.
#[derive(Debug, Parser)]
#[command(name = "porthole", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode one data-channel frame given as hex and print its fields (a debugging aid).
    DecodeFrame {
        /// The frame's bytes in hex (whitespace ignored).
        hex: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::DecodeFrame { hex } => decode_frame(&hex),
    }
}

fn decode_frame(text: &str) -> ExitCode {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = match hex::decode(&clean) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: the frame is not valid hex: {e}");
            return ExitCode::from(2);
        }
    };
    match codec::decode(&bytes) {
        Ok(m) => {
            println!("MessageType     {}", m.message_type.as_str());
            println!("SchemaVersion   {}", m.schema_version);
            println!("CreatedDate     {} ms", m.created_date);
            println!("SequenceNumber  {}", m.sequence_number);
            println!("Flags           {}", m.flags);
            println!("MessageId       {}", m.message_id);
            println!(
                "PayloadType     {:?} ({})",
                m.payload_type,
                m.payload_type.to_u32()
            );
            println!("PayloadLength   {}", m.payload.len());
            match std::str::from_utf8(m.payload) {
                Ok(s) => println!("Payload         {s:?}"),
                Err(_) => println!("Payload (hex)   {}", hex::encode(m.payload)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
