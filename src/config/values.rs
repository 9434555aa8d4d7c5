//! Values a key may take: integers in a range, and `auto` or one value of an enum.

use std::fmt;

use serde::Deserialize;

/// An integer key restricted to `MIN..=MAX`; out-of-range values are rejected with their span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Int<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> TryFrom<i64> for Int<MIN, MAX> {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Int(v))
        } else {
            Err(format!("{v} is out of range: expected {MIN} to {MAX}"))
        }
    }
}

impl<const MIN: i64, const MAX: i64> Int<MIN, MAX> {
    pub fn u64(self) -> u64 {
        self.0 as u64
    }
}

/// A setting that is either `auto` (the recorder decides at start) or one value of `T`: config
/// `queue.overflow = "auto"`, `--overflow auto`. `T` spells its values in both places through its
/// serde and clap derives; anything else is an error naming every accepted value, `auto` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOr<T> {
    #[default]
    Auto,
    Set(T),
}

impl<T> AutoOr<T> {
    /// `None` for `auto`.
    pub fn set(self) -> Option<T> {
        match self {
            AutoOr::Auto => None,
            AutoOr::Set(v) => Some(v),
        }
    }
}

impl<T: clap::ValueEnum + 'static> AutoOr<T> {
    /// `auto` and every name of `T`, as clap shows them.
    pub(super) fn possible_values() -> impl Iterator<Item = clap::builder::PossibleValue> {
        std::iter::once(clap::builder::PossibleValue::new("auto"))
            .chain(T::value_variants().iter().filter_map(T::to_possible_value))
    }

    /// The command-line parser: clap's own error (naming every value) for anything else.
    pub fn value_parser() -> impl clap::builder::TypedValueParser<Value = AutoOr<T>>
    where
        T: Clone + Send + Sync,
    {
        use clap::builder::TypedValueParser;
        clap::builder::PossibleValuesParser::new(Self::possible_values()).try_map(|name| {
            if name == "auto" {
                Ok(AutoOr::Auto)
            } else {
                T::from_str(&name, false).map(AutoOr::Set)
            }
        })
    }
}

impl<'de, T> Deserialize<'de> for AutoOr<T>
where
    T: serde::de::DeserializeOwned + clap::ValueEnum + 'static,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names<T>(std::marker::PhantomData<T>);
        impl<T: clap::ValueEnum + 'static> fmt::Display for Names<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of ")?;
                for (i, v) in AutoOr::<T>::possible_values().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}`{}`", v.get_name())?;
                }
                Ok(())
            }
        }
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<T> serde::de::Visitor<'_> for Visit<T>
        where
            T: serde::de::DeserializeOwned + clap::ValueEnum + 'static,
        {
            type Value = AutoOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", Names::<T>(std::marker::PhantomData))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AutoOr<T>, E> {
                use serde::de::IntoDeserializer;
                if v == "auto" {
                    return Ok(AutoOr::Auto);
                }
                let named: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                    v.into_deserializer();
                T::deserialize(named).map(AutoOr::Set).map_err(|_| {
                    E::custom(format_args!(
                        "unknown variant `{v}`, expected {}",
                        Names::<T>(std::marker::PhantomData)
                    ))
                })
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}
