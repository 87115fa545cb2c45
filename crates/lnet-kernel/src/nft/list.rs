//! Reading back: the tables, chains, sets, rules and set elements of the
//! socket's namespace, one dump request each, decoded by `lnet-nft`.

use lnet_nft::decode::{self, DecodeError};
use lnet_nla::Writer;

use super::socket::NftSocket;
use super::sys::*;
use super::{ChainInfo, Element, Family, RuleInfo, SetInfo};
use crate::error::Result;

impl NftSocket {
    /// The names of the tables of `family` (one dump request).
    pub fn tables(&mut self, family: Family) -> Result<Vec<String>> {
        self.dump_collect(NFT_MSG_GETTABLE, family, &[], |msg, out| {
            if let Some((f, name)) = decode::table(msg)?
                && f == family
            {
                out.push(name);
            }
            Ok(())
        })
    }

    /// The chains of one table (one dump request).
    pub fn chains(&mut self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        // Older kernels ignore the table filter of chain dumps: checked
        // again here, as is the family.
        let filter = [(NFTA_CHAIN_TABLE, table)];
        self.dump_collect(NFT_MSG_GETCHAIN, family, &filter, |msg, out| {
            out.extend(decode::chain(msg)?.filter(|c| c.family == family && c.table == table));
            Ok(())
        })
    }

    /// The sets and maps of one table (one dump request; anonymous sets
    /// that `nft` creates for literal `{ ... }` are included).
    pub fn sets(&mut self, family: Family, table: &str) -> Result<Vec<SetInfo>> {
        let filter = [(NFTA_SET_TABLE, table)];
        self.dump_collect(NFT_MSG_GETSET, family, &filter, |msg, out| {
            out.extend(decode::set(msg)?.filter(|s| s.family == family && s.table == table));
            Ok(())
        })
    }

    /// The rules of one chain, in order (one dump request).
    pub fn rules(&mut self, family: Family, table: &str, chain: &str) -> Result<Vec<RuleInfo>> {
        // The kernel filters by the names we sent; the family byte of a
        // dump request is a filter too.
        let filter = [(NFTA_RULE_TABLE, table), (NFTA_RULE_CHAIN, chain)];
        self.dump_collect(NFT_MSG_GETRULE, family, &filter, |msg, out| {
            out.extend(decode::rule(msg)?);
            Ok(())
        })
    }

    /// The elements of a set or map (one dump request). Fails with
    /// `ENOENT` when the set does not exist.
    pub fn set_elements(&mut self, family: Family, table: &str, set: &str) -> Result<Vec<Element>> {
        let filter = [
            (NFTA_SET_ELEM_LIST_TABLE, table),
            (NFTA_SET_ELEM_LIST_SET, set),
        ];
        self.dump_collect(NFT_MSG_GETSETELEM, family, &filter, |msg, out| {
            out.extend(decode::elements(msg)?);
            Ok(())
        })
    }

    /// One dump request of `msg` in `family`, filtered in the kernel by the
    /// string attributes `filter`; `each` adds what one answer message
    /// holds to the result, or says why it could not be read.
    fn dump_collect<T>(
        &mut self,
        msg: u16,
        family: Family,
        filter: &[(u16, &str)],
        mut each: impl FnMut(&[u8], &mut Vec<T>) -> std::result::Result<(), DecodeError>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let attrs = |w: &mut Writer| {
            for &(attr, value) in filter {
                w.str(attr, value);
            }
        };
        self.dump(msg, family, attrs, |msg| each(msg, &mut out))?;
        Ok(out)
    }
}
